"""Activation store: harvest hook points from a model, mix rows through a shuffling buffer, batch them for training.

    contexts = ms.data.pack(ms.data.stdlib_corpus(), model.tokenizer, PackConfig(context_size=128))
    store = ActivationStore.from_model(model, contexts, ["blocks.6.resid_post"], StoreConfig(batch_size=4096))
    for batch in store.batches():          # {hook: (4096, d_model)}
        ...

:func:`harvest` records every requested hook point in one forward pass that stops after the deepest one. Special
tokens (BOS, EOS ...) are dropped when ``exclude_special`` is set. :class:`MixingBuffer` fills a buffer of
``buffer_rows`` rows, shuffles it with its own seeded generator and hands out the first half, so consecutive
batches mix many contexts. The stream is deterministic for a given corpus, seed and rank, which is what lets a
trainer resume by replaying it. :func:`harvest_to_disk` writes sharded safetensors (see :mod:`.shards`) and
:meth:`ActivationStore.from_shards` trains from them.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from ..data.packing import batched, rank_slice, special_ids, train_mask
from .shards import MANIFEST, Manifest, read_shards, write_shards

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]
"""Hook name -> ``(rows, width)`` activations."""

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class StoreConfig:
    """How activations are harvested, mixed and batched."""

    batch_size: int = 4096
    """Activation rows per training batch (per rank under torchrun)."""
    buffer_rows: int = 65536
    """Rows held in the shuffling buffer; half of it is handed out after each refill."""
    model_batch: int = 8
    """Token contexts per model forward pass while harvesting."""
    dtype: str = "float32"
    """Dtype activations are stored in (float32, float16, bfloat16); training always runs in float32."""
    exclude_special: bool = True
    """Drop activations at special-token positions (BOS, EOS, pad), whose norms are outliers."""
    shuffle: bool = True
    """Shuffle rows through the buffer; False keeps corpus order (for tests and debugging)."""
    seed: int = 0
    """Seed of the buffer's shuffling (rank r uses seed + r)."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "buffer_rows", "model_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.buffer_rows < self.batch_size:
            raise ValueError(f"buffer_rows ({self.buffer_rows}) must be at least batch_size ({self.batch_size})")


def _rows(act: Tensor, mask: Tensor) -> Tensor:
    return act[mask].reshape(int(mask.sum()), -1)  # (N, D): heads flattened into the width


@torch.no_grad()
def harvest(model, contexts: Iterable[Int[Tensor, " ctx"]], hook_names: list[str], *, model_batch: int = 8,
            exclude: Iterable[int] = (), dtype: torch.dtype = torch.float32
            ) -> Iterator[tuple[int, Batch]]:
    """Yield ``(n_contexts, {hook: (rows, width)})`` per forward pass; positions holding ``exclude`` ids dropped."""
    names = [model.resolve(h).name for h in hook_names]
    exclude = list(exclude)
    for ids in batched(contexts, model_batch):  # (B, T)
        ids = ids.to(model.cfg.device)
        _, cache = model.run_with_cache(ids, names=names, stop_early=True)
        mask = train_mask(ids, exclude)  # (B, T)
        yield ids.shape[0], {h: _rows(cache[h], mask).to("cpu", dtype) for h in names}


class MixingBuffer:
    """Shuffle a stream of row chunks through a fixed-size buffer and cut it into equal batches."""

    def __init__(self, capacity: int, batch_size: int, *, shuffle: bool = True, seed: int = 0):
        self.capacity, self.batch_size, self.shuffle = capacity, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def _permute(self, buf: Batch) -> Batch:
        if not self.shuffle:
            return buf
        n = next(iter(buf.values())).shape[0]
        perm = torch.randperm(n, generator=self.generator)
        return {k: v[perm] for k, v in buf.items()}

    def _emit(self, buf: Batch, n_out: int) -> Iterator[Batch]:
        for i in range(0, n_out, self.batch_size):
            yield {k: v[i:i + self.batch_size] for k, v in buf.items()}

    def __call__(self, chunks: Iterable[Batch]) -> Iterator[Batch]:
        pending: list[Batch] = []
        n = 0
        for chunk in chunks:
            pending.append(chunk)
            n += next(iter(chunk.values())).shape[0]
            if n < self.capacity:
                continue
            buf = self._permute({k: torch.cat([c[k] for c in pending]) for k in chunk})
            n_out = (n - self.capacity // 2) // self.batch_size * self.batch_size
            yield from self._emit(buf, n_out)
            pending, n = [{k: v[n_out:] for k, v in buf.items()}], n - n_out
        if pending and n >= self.batch_size:
            buf = self._permute({k: torch.cat([c[k] for c in pending]) for k in pending[0]})
            yield from self._emit(buf, n // self.batch_size * self.batch_size)


class ActivationStore:
    """A restartable, deterministic stream of training batches ``{hook: (batch_size, width)}``.

    Build it with :meth:`from_model` (live harvest), :meth:`from_shards` (a cache on disk) or :meth:`from_tensors`
    (activations already in memory, e.g. a toy model's hidden layer; cycled epoch after epoch).
    """

    def __init__(self, chunks: Callable[[], Iterable[Batch]], hook_names: list[str], cfg: StoreConfig, *,
                 rank: int = 0, cycle: bool = False):
        self._chunks, self.hook_names, self.cfg, self.rank, self.cycle = chunks, hook_names, cfg, rank, cycle

    @classmethod
    def from_model(cls, model, contexts: Callable[[], Iterable[Tensor]] | Iterable[Tensor], hook_names: list[str],
                   cfg: StoreConfig | None = None, *, rank: int = 0, world_size: int = 1) -> ActivationStore:
        """Harvest live. ``contexts`` is a zero-argument factory (so the stream can restart) or a re-iterable."""
        cfg = cfg or StoreConfig()
        exclude = special_ids(model.tokenizer) if cfg.exclude_special and model.tokenizer is not None else []
        names = [model.resolve(h).name for h in hook_names]

        def chunks() -> Iterator[Batch]:
            ctx = contexts() if callable(contexts) else contexts
            for _, chunk in harvest(model, rank_slice(ctx, rank, world_size), names, model_batch=cfg.model_batch,
                                    exclude=exclude, dtype=DTYPES[cfg.dtype]):
                yield chunk

        return cls(chunks, names, cfg, rank=rank)

    @classmethod
    def from_shards(cls, folder: str | os.PathLike[str], cfg: StoreConfig | None = None, *, rank: int = 0,
                    world_size: int = 1, verify_checksums: bool = True) -> ActivationStore:
        """Stream a cache written by :func:`harvest_to_disk`; rank r reads every world_size-th shard."""
        manifest = Manifest.read(folder)
        return cls(lambda: read_shards(folder, verify_checksums=verify_checksums, rank=rank, world_size=world_size),
                   list(manifest.hook_points), cfg or StoreConfig(), rank=rank)

    @classmethod
    def from_tensors(cls, tensors: Batch, cfg: StoreConfig | None = None, *, rank: int = 0, world_size: int = 1
                     ) -> ActivationStore:
        """Rows already in memory; rank r takes rows ``r::world_size``. Cycled indefinitely."""
        sliced = {k: v[rank::world_size] for k, v in tensors.items()}
        chunk_rows = max(1, (cfg or StoreConfig()).batch_size)

        def chunks() -> Iterator[Batch]:
            n = next(iter(sliced.values())).shape[0]
            for i in range(0, n, chunk_rows):
                yield {k: v[i:i + chunk_rows] for k, v in sliced.items()}

        return cls(chunks, list(tensors), cfg or StoreConfig(), rank=rank, cycle=True)

    def batches(self) -> Iterator[Batch]:
        """Training batches, float32; deterministic for a given corpus, config and rank."""
        cfg = self.cfg
        mixer = MixingBuffer(cfg.buffer_rows, cfg.batch_size, shuffle=cfg.shuffle, seed=cfg.seed + self.rank)
        epochs = itertools.count() if self.cycle else range(1)
        for _ in epochs:
            produced = False
            for batch in mixer(self._chunks()):
                produced = True
                yield {k: v.float() for k, v in batch.items()}
            if not produced:
                raise ValueError(f"the activation stream yields fewer than batch_size={cfg.batch_size} rows")


def harvest_to_disk(model, contexts: Callable[[], Iterable[Tensor]], hook_names: list[str],
                    folder: str | os.PathLike[str], *, contexts_per_shard: int = 256, max_contexts: int | None = None,
                    cfg: StoreConfig | None = None) -> Manifest:
    """Harvest into sharded safetensors in ``folder``; resumes a half-written cache (finished shards kept).

    ``contexts`` is a zero-argument factory returning the same contexts in the same order every call.
    """
    cfg = cfg or StoreConfig()
    names = [model.resolve(h).name for h in hook_names]
    first = next(iter(contexts()))
    manifest = Manifest(model=model.cfg.name, hook_points=names, widths={}, dtype=cfg.dtype,
                        contexts_per_shard=contexts_per_shard, context_size=int(first.shape[-1]))
    _, probe = next(harvest(model, [first], names, exclude=()))
    manifest.widths = {h: int(t.shape[-1]) for h, t in probe.items()}
    done = 0
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        done = sum(s.contexts for s in Manifest.read(folder).shards)
    exclude = special_ids(model.tokenizer) if cfg.exclude_special and model.tokenizer is not None else []
    chunks = harvest(model, itertools.islice(contexts(), done, max_contexts), names, model_batch=cfg.model_batch,
                     exclude=exclude, dtype=DTYPES[cfg.dtype])
    return write_shards(chunks, folder, manifest, max_contexts=max_contexts)
