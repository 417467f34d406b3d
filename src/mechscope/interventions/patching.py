"""Activation patching: one generic batched function, and sweeps built on it.

:func:`activation_patch` runs the *base* input (the corrupted one when denoising) once per :class:`Cell`, with
that cell's slice of a hook point replaced by the *source* run's activation (the clean one when denoising), and
scores each run with a metric. Many patched variants are stacked into one batch (``batch_size`` rows per forward
pass), so a full layers × positions sweep is a handful of forward passes.

    >>> res = patch_resid(model, clean, corrupted, logit_diff(io, s))      # layers × positions
    >>> res = patch_heads(model, clean, corrupted, metric)                 # layers × heads (attn.z)
    >>> res.plot("resid.png", normalized=True)

``direction="noise"`` swaps the roles: run the clean input and patch in corrupted activations.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..metrics import Metric, as_metric
from ..models.hooked import HookedModel
from ..models.tokens import Inputs, Tokens
from .results import PatchResult

HEAD_KINDS = ("attn.q", "attn.k", "attn.v", "attn.z")  # (B, T, H, Dh)
Direction = Literal["denoise", "noise"]


@dataclass(frozen=True)
class Cell:
    """One patch: hook point ``name``, position ``pos`` (None: all) and head ``head`` (None: all heads).

    For ``attn.pattern`` the position is the query position. ``head`` is only valid on per-head points
    (q, k, v, z, pattern); k and v count key/value heads under grouped-query attention.
    """

    name: str
    pos: int | None = None
    head: int | None = None


def cell_index(kind: str, pos: int | None, head: int | None) -> tuple:
    """Index (after the batch axis) selecting a cell of an activation of hook kind ``kind``."""
    p = slice(None) if pos is None else pos
    h = slice(None) if head is None else head
    if kind in HEAD_KINDS:
        return (p, h)  # (T, H, Dh)
    if kind == "attn.pattern":
        return (h, p)  # (H, Q, K)
    if head is not None:
        raise ValueError(f"head={head} given for {kind!r}, which has no head axis; heads exist on "
                         f"{', '.join(HEAD_KINDS)} and attn.pattern")
    return (p,)


class PatchInputError(ValueError):
    """Clean and corrupted inputs that cannot be patched into each other."""


def check_matched(clean: Tokens, corrupted: Tokens, model: HookedModel | None = None) -> None:
    """Raise unless clean and corrupted have the same shape and per-prompt lengths."""
    a, b = clean.input_ids, corrupted.input_ids
    if a.shape != b.shape:
        raise PatchInputError(
            f"clean tokens have shape {tuple(a.shape)} but corrupted tokens {tuple(b.shape)} (batch, pos); "
            f"patching needs the same number of prompts with matched token lengths"
            + _first_mismatch(clean, corrupted, model))
    la, lb = clean.lengths, corrupted.lengths
    if not torch.equal(la, lb):
        i = int((la != lb).nonzero()[0])
        raise PatchInputError(f"prompt {i} has {int(la[i])} clean tokens but {int(lb[i])} corrupted tokens; "
                              f"patching needs matched token lengths" + _first_mismatch(clean, corrupted, model))


def _first_mismatch(a: Tokens, b: Tokens, model: HookedModel | None) -> str:
    if model is None or model.tokenizer is None:
        return ""
    for i in range(min(a.input_ids.shape[0], b.input_ids.shape[0])):
        la, lb = int(a.lengths[i]), int(b.lengths[i])
        if la != lb:
            return (f" (prompt {i}: clean {model.to_str_tokens(a.input_ids[i, :la])} vs corrupted "
                    f"{model.to_str_tokens(b.input_ids[i, :lb])})")
    return ""


@dataclass
class PatchRun:
    """Base tokens, source activations and both baselines, shared by every variant of a sweep."""

    base: Tokens
    source: dict[str, Tensor]
    base_metric: float | None
    source_metric: float | None


def _reduce(value: Tensor) -> Tensor:
    return value.float().mean() if value.ndim == 1 else value.float()


def prepare(model: HookedModel, clean: Inputs | Mapping[str, Tensor], corrupted: Inputs, names: Sequence[str],
            metric: Metric | None, direction: Direction = "denoise") -> PatchRun:
    """Tokenise both sides, check they match, cache the source activations at ``names`` and the baselines.

    ``clean`` may also be a mapping from hook names to activations (e.g. an :class:`ActivationCache`), used as the
    source directly (denoising only); its baseline metric is then unknown (None).
    """
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' (patch clean into corrupted) or 'noise', got {direction!r}")
    names = sorted({model.resolve(n).name for n in names}, key=lambda n: model.resolve(n).order)
    if isinstance(clean, Mapping):
        if direction != "denoise":
            raise ValueError("a mapping of source activations can only be patched with direction='denoise'")
        base = model.as_tokens(corrupted)
        source = {n: clean[n] for n in names}
        for n, t in source.items():
            if t.shape[0] != base.input_ids.shape[0]:
                raise PatchInputError(f"source activation {n!r} has batch {t.shape[0]} but the corrupted input "
                                      f"has {base.input_ids.shape[0]} prompts")
        src_metric = None
    else:
        clean_t, corr_t = model.as_tokens(clean), model.as_tokens(corrupted)
        check_matched(clean_t, corr_t, model)
        base, src = (corr_t, clean_t) if direction == "denoise" else (clean_t, corr_t)
        with torch.no_grad():
            logits, cache = model.run_with_cache(src, names=[*names, "logits"])
        source = {n: cache[n] for n in names}
        src_metric = None if metric is None else float(_reduce(metric(logits)))
    base_metric = None
    if metric is not None:
        with torch.no_grad():
            base_metric = float(_reduce(metric(model(base))))
    return PatchRun(base, source, base_metric, src_metric)


def _patch_hooks(model: HookedModel, cells: Sequence[Cell], source: dict[str, Tensor], rows: int
                 ) -> list[tuple[str, Callable]]:
    """Hooks writing ``cells[j]`` from ``source`` into rows ``j*rows:(j+1)*rows`` of the stacked batch."""
    by_name: dict[str, list[tuple[int, tuple]]] = defaultdict(list)
    for j, cell in enumerate(cells):
        point = model.resolve(cell.name)
        by_name[point.name].append((j, cell_index(point.kind, cell.pos, cell.head)))

    def make(name: str, items: list[tuple[int, tuple]]) -> Callable:
        src = source[name]

        def fn(act: Tensor, hook) -> Tensor:
            out = act.clone()
            for j, idx in items:
                where = (slice(None),) + tuple(idx)  # every prompt, then the cell's own index
                out[j * rows:(j + 1) * rows][where] = src[where].to(out.dtype)
            return out
        return fn

    return [(name, make(name, items)) for name, items in by_name.items()]


def _expand(x: object, b: int, k: int) -> object:
    """Repeat every batch-first tensor (``shape[0] == b``, 2-D or more) ``k`` times along the batch, recursively."""
    if isinstance(x, Tensor):
        return x.repeat(k, *([1] * (x.ndim - 1))) if x.ndim >= 2 and x.shape[0] == b else x
    if isinstance(x, (tuple, list)):
        return type(x)(_expand(v, b, k) for v in x)
    return x


def _expand_batch_heads(x: Tensor, b: int, k: int) -> Tensor:
    """Repeat a ``(b*heads, ...)`` tensor ``k`` times per prompt: ``(k*b*heads, ...)``, batch-major as HF lays it."""
    if x.shape[0] % b:
        raise RuntimeError(f"expected a (batch*heads, ...) tensor for {b} prompts, got shape {tuple(x.shape)}")
    per_prompt = x.unflatten(0, (b, -1))  # (b, heads, ...)
    return per_prompt.repeat(k, *([1] * (per_prompt.ndim - 1))).flatten(0, 1)


@contextlib.contextmanager
def shared_prefix(model: HookedModel, layer: int, b: int, k: int) -> Iterator[None]:
    """Run blocks before ``layer`` once on the ``b`` base rows, then fan out to ``k`` copies at block ``layer``.

    Every variant is identical to the base run before its first patched layer, so the prefix is computed once.
    The fan-out is a forward pre-hook on that block and every later one, running before any hook point
    (``prepend=True``); batch-first tensors among each block's other arguments (masks, per-row position
    embeddings) are repeated alongside, and so are those the adapter declares batch × heads (Bloom's ALiBi).
    """
    batch_heads = model.adapter.batch_heads_kwargs  # Bloom's ALiBi bias: (b*heads, 1, keys)

    def fan_out(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[0] == b:  # the first shared block: fan the residual out
            hidden = hidden.repeat(k, 1, 1)
        # every later block gets them afresh from HF, for the b base rows
        new_kwargs = {key: _expand_batch_heads(v, b, k) if key in batch_heads and isinstance(v, Tensor)
                      else _expand(v, b, k) for key, v in kwargs.items()}
        if args:
            return (hidden, *_expand(tuple(args[1:]), b, k)), new_kwargs
        new_kwargs["hidden_states"] = hidden
        return args, new_kwargs

    handles = [block.register_forward_pre_hook(fan_out, with_kwargs=True, prepend=True)
               for block in list(model.blocks)[layer:]]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_variants(model: HookedModel, base: Tokens, n_variants: int, metric: Metric,
                 hooks_for: Callable[[range], list], batch_size: int = 64,
                 first_layer: Callable[[int], int] | None = None) -> Float[Tensor, " variants"]:
    """Run ``n_variants`` copies of ``base`` stacked in batches; ``hooks_for(chunk)`` patches each chunk.

    Within a chunk, variant ``chunk[j]`` occupies rows ``j*B:(j+1)*B`` (B = prompts in ``base``). When
    ``first_layer(i)`` gives the first block variant ``i`` changes, the blocks before a chunk's earliest such layer
    run once on the base rows (:func:`shared_prefix`). Returns the metric of each variant, averaged over prompts
    when the metric gives one value per prompt.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    b, t = base.input_ids.shape
    per = max(1, batch_size // b)
    values: list[Tensor] = []
    for start in range(0, n_variants, per):
        chunk = range(start, min(n_variants, start + per))
        k = len(chunk)
        fan_at = min(first_layer(i) for i in chunk) if first_layer is not None and k > 1 else 0
        with torch.no_grad():
            if fan_at > 0:
                with shared_prefix(model, fan_at, b, k):
                    logits = model.run_with_hooks(base, hooks_for(chunk))  # (k*B, T, V)
            else:
                mask = None if base.attention_mask is None else base.attention_mask.repeat(k, 1)
                logits = model.run_with_hooks(Tokens(base.input_ids.repeat(k, 1), mask), hooks_for(chunk))
        if logits.shape[0] != k * b:
            raise RuntimeError(f"expected {k * b} rows of logits, got {logits.shape[0]}")
        for j in range(k):
            values.append(_reduce(metric(logits[j * b:(j + 1) * b])))
    return torch.stack(values) if values else torch.empty(0)


def activation_patch(model: HookedModel, clean: Inputs | Mapping[str, Tensor], corrupted: Inputs,
                     metric: Callable[[Tensor], Tensor] | Metric, cells: Sequence[Cell], *,
                     direction: Direction = "denoise", batch_size: int = 64, run: PatchRun | None = None,
                     share_prefix: bool = True) -> Float[Tensor, " cells"]:
    """The metric of the base run with each cell patched from the source run, one value per cell.

    Generic over hook points, positions and heads: every sweep in this module is a thin layer over it. With
    ``share_prefix`` the blocks before a batch's first patched layer run once for the whole batch.
    """
    metric = as_metric(metric)
    cells = list(cells)
    if run is None:
        run = prepare(model, clean, corrupted, [c.name for c in cells], metric, direction)
    rows = run.base.input_ids.shape[0]
    t = run.base.input_ids.shape[1]
    for c in cells:
        if c.pos is not None and not -t <= c.pos < t:
            raise ValueError(f"cell {c}: position {c.pos} is out of range for {t} tokens")
    layers = [model.resolve(c.name).layer for c in cells]
    first = (lambda i: layers[i] or 0) if share_prefix else None  # global points (embed, final_norm): no sharing
    return run_variants(model, run.base, len(cells), metric,
                        lambda chunk: _patch_hooks(model, [cells[i] for i in chunk], run.source, rows), batch_size,
                        first)


def position_labels(model: HookedModel, tokens: Tokens) -> list[str]:
    """``"i:token"`` labels of the first prompt's positions."""
    ids = tokens.input_ids[0]
    try:
        strs = model.to_str_tokens(ids)
    except Exception:  # no tokenizer
        strs = [str(int(i)) for i in ids]
    return [f"{i}:{s if s.isprintable() else repr(s)}" for i, s in enumerate(strs)]


def _n_heads(model: HookedModel, kind: str) -> int:
    return model.cfg.n_kv_heads if kind in ("attn.k", "attn.v") else model.cfg.n_heads


def patch_sweep(model: HookedModel, clean: Inputs, corrupted: Inputs, metric: Callable[[Tensor], Tensor] | Metric,
                *, kind: str = "resid_pre", axis: Literal["pos", "head"] = "pos", layers: Sequence[int] | None = None,
                positions: Sequence[int] | None = None, pos: int | None = None, direction: Direction = "denoise",
                batch_size: int = 64, share_prefix: bool = True) -> PatchResult:
    """Patch ``blocks.L.<kind>`` for every layer × position (``axis="pos"``) or layer × head (``axis="head"``).

    With ``axis="head"`` each cell patches one head at position ``pos`` (None: all positions).
    """
    metric = as_metric(metric)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = [f"blocks.{layer}.{kind}" for layer in layers]
    run = prepare(model, clean, corrupted, names, metric, direction)
    if axis == "pos":
        t = run.base.input_ids.shape[1]
        cols = list(range(t)) if positions is None else [p % t for p in positions]
        labels = position_labels(model, run.base)
        col_labels = [labels[p] for p in cols]
        cells = [Cell(n, pos=p) for n in names for p in cols]
    elif axis == "head":
        kind_ = model.resolve(names[0]).kind
        if kind_ not in (*HEAD_KINDS, "attn.pattern"):
            raise ValueError(f"axis='head' needs a per-head hook kind ({', '.join(HEAD_KINDS)}, attn.pattern), "
                             f"got {kind!r}")
        cols = list(range(_n_heads(model, kind_)))
        col_labels = [f"H{h}" for h in cols]
        cells = [Cell(n, pos=pos, head=h) for n in names for h in cols]
    else:
        raise ValueError(f"axis must be 'pos' or 'head', got {axis!r}")
    values = activation_patch(model, clean, corrupted, metric, cells, batch_size=batch_size, run=run,
                              share_prefix=share_prefix)
    clean_m, corr_m = ((run.source_metric, run.base_metric) if direction == "denoise"
                       else (run.base_metric, run.source_metric))
    return PatchResult(values.view(len(layers), len(cols)), [f"L{layer}" for layer in layers], col_labels,
                       metric.name, clean_m, corr_m, title=f"patching {kind} ({direction})")


patch_resid = partial(patch_sweep, kind="resid_pre", axis="pos")
patch_resid.__doc__ = "Layers × positions sweep over ``resid_pre`` (see :func:`patch_sweep`)."
patch_attn_out = partial(patch_sweep, kind="attn_out", axis="pos")
patch_mlp_out = partial(patch_sweep, kind="mlp_out", axis="pos")
patch_heads = partial(patch_sweep, kind="attn.z", axis="head")
patch_heads.__doc__ = "Layers × heads sweep over ``attn.z`` at all positions (see :func:`patch_sweep`)."


def patch_head_components(model: HookedModel, clean: Inputs, corrupted: Inputs,
                          metric: Callable[[Tensor], Tensor] | Metric, *, layers: Sequence[int] | None = None,
                          pos: int | None = None, direction: Direction = "denoise", batch_size: int = 64,
                          ) -> dict[str, PatchResult]:
    """Layers × heads sweeps of each of q, k, v and z (k/v over key/value heads), keyed by kind."""
    return {kind: patch_sweep(model, clean, corrupted, metric, kind=kind, axis="head", layers=layers, pos=pos,
                              direction=direction, batch_size=batch_size)
            for kind in HEAD_KINDS}
