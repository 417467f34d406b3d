"""Sharded activation caches on disk: safetensors shards plus a JSON manifest, written atomically and resumable.

Layout of a cache folder::

    manifest.json               see :class:`Manifest` (model, hook points, widths, dtype, token count, checksums)
    shard_00000.safetensors     one tensor per hook point, key = canonical hook name, shape (rows, width)
    shard_00001.safetensors     ...

Every file is written to a temporary name and moved into place with ``os.replace``, and the manifest is rewritten
after each finished shard, so a killed harvest leaves a valid cache of the shards finished so far;
:func:`write_shards` on the same folder verifies them and continues with the next shard without redoing any.
The contexts are deterministic (same corpus, same packing), so shard ``i`` always holds contexts
``i * contexts_per_shard ...``. :func:`read_shards` checks sha256 checksums and raises :class:`ShardChecksumError`
on a corrupt or missing file.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..files import atomic_write, atomic_write_text, sha256_file  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "mechscope-activations/1"


class ShardError(ValueError):
    """An activation cache folder is unusable (missing manifest, settings that differ from the request ...)."""


class ShardChecksumError(ShardError):
    """A shard's bytes do not match the sha256 recorded in the manifest (corrupt or replaced file)."""


@dataclass
class ShardInfo:
    """One finished shard."""

    file: str
    """File name inside the cache folder."""
    contexts: int
    """Token contexts harvested into this shard."""
    tokens: int
    """Activation rows stored (contexts x positions, minus excluded special tokens)."""
    sha256: str
    """Hex sha256 of the file's bytes."""


@dataclass
class Manifest:
    """Contents of ``manifest.json``."""

    model: str
    """Name of the model the activations come from."""
    hook_points: list[str]
    """Canonical hook names, one tensor per name in every shard."""
    widths: dict[str, int]
    """Row width of each hook point."""
    dtype: str
    """Storage dtype (float32, float16, bfloat16)."""
    contexts_per_shard: int
    """Contexts harvested into each shard (the last may hold fewer)."""
    context_size: int = 0
    """Tokens per context."""
    shards: list[ShardInfo] = field(default_factory=list)
    """Finished shards, in order."""
    complete: bool = False
    """True once the harvest reached its end (corpus exhausted or ``max_contexts`` reached)."""
    format: str = FORMAT
    """Format tag."""

    @property
    def tokens(self) -> int:
        """Total activation rows over all finished shards."""
        return sum(s.tokens for s in self.shards)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "tokens": self.tokens}, indent=1)

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise ShardError(f"{folder} is not an activation cache: no {MANIFEST}")
        raw: dict[str, Any] = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ShardError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
        raw.pop("tokens", None)
        raw["shards"] = [ShardInfo(**s) for s in raw.get("shards", [])]
        return cls(**raw)


def _write_shard(folder: Path, index: int, tensors: dict[str, Tensor], contexts: int) -> ShardInfo:
    name = f"shard_{index:05d}.safetensors"
    digest = ""

    def write(tmp: Path) -> None:
        nonlocal digest
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        digest = sha256_file(tmp)

    atomic_write(folder / name, write)
    rows = next(iter(tensors.values())).shape[0]
    return ShardInfo(file=name, contexts=contexts, tokens=int(rows), sha256=digest)


def _check_same(old: Manifest, new: Manifest) -> None:
    for key in ("model", "hook_points", "dtype", "contexts_per_shard", "context_size"):
        if getattr(old, key) != getattr(new, key):
            raise ShardError(f"cache was started with {key}={getattr(old, key)!r}, now {getattr(new, key)!r}; "
                             "use a new folder or the same settings to resume")


def verify(folder: str | os.PathLike[str], manifest: Manifest | None = None) -> Manifest:
    """Check every listed shard exists and matches its checksum; returns the manifest."""
    manifest = manifest or Manifest.read(folder)
    for s in manifest.shards:
        path = Path(folder) / s.file
        if not path.is_file():
            raise ShardChecksumError(f"shard {s.file} listed in the manifest is missing from {folder}")
        if sha256_file(path) != s.sha256:
            raise ShardChecksumError(f"shard {path} is corrupt: its sha256 differs from the manifest's")
    return manifest


def write_shards(chunks: Iterable[tuple[int, dict[str, Tensor]]], folder: str | os.PathLike[str], manifest: Manifest,
                 *, max_contexts: int | None = None) -> Manifest:
    """Write harvested chunks into shards, resuming a half-written cache in ``folder``.

    ``chunks`` yields ``(n_contexts, {hook: (rows, width)})`` in corpus order; it must be restartable from the start
    (it is re-created by the caller), and ``skip_contexts(manifest)`` tells how many leading contexts to drop.
    Use :func:`mechscope.activations.store.harvest_to_disk`, which does both.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".*.tmp-*"):
        leftover.unlink()
    if (folder / MANIFEST).is_file():
        old = verify(folder)
        _check_same(old, manifest)
        manifest = old
        if manifest.complete:
            log.info("activation cache %s is complete (%d tokens)", folder, manifest.tokens)
            return manifest
        log.info("resuming activation cache %s after %d shards", folder, len(manifest.shards))
    done = sum(s.contexts for s in manifest.shards)
    pending: dict[str, list[Tensor]] = {h: [] for h in manifest.hook_points}
    n_pending = 0
    bar = tqdm(total=max_contexts, initial=done, desc="harvest", unit="ctx", disable=None)

    def flush() -> None:
        nonlocal n_pending
        tensors = {h: torch.cat(v) for h, v in pending.items()}
        manifest.shards.append(_write_shard(folder, len(manifest.shards), tensors, n_pending))
        atomic_write_text(folder / MANIFEST, manifest.to_json())
        for v in pending.values():
            v.clear()
        n_pending = 0

    for n, chunk in chunks:
        for h in manifest.hook_points:
            pending[h].append(chunk[h])
        n_pending += n
        done += n
        bar.update(n)
        if n_pending >= manifest.contexts_per_shard:
            flush()
        if max_contexts is not None and done >= max_contexts:
            break
    if n_pending:
        flush()
    bar.close()
    manifest.complete = True
    atomic_write_text(folder / MANIFEST, manifest.to_json())
    return manifest


def read_shards(folder: str | os.PathLike[str], *, verify_checksums: bool = True, rank: int = 0,
                world_size: int = 1) -> Iterator[dict[str, Tensor]]:
    """Yield each shard's ``{hook: (rows, width)}`` in order (every ``world_size``-th shard from ``rank``)."""
    manifest = Manifest.read(folder)
    for s in itertools.islice(manifest.shards, rank, None, world_size):
        path = Path(folder) / s.file
        if not path.is_file():
            raise ShardChecksumError(f"shard {s.file} listed in the manifest is missing from {folder}")
        if verify_checksums and sha256_file(path) != s.sha256:
            raise ShardChecksumError(f"shard {path} is corrupt: its sha256 differs from the manifest's")
        yield load_file(str(path))
