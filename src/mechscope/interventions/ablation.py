"""Ablation hooks: zero, mean (over a reference dataset) and resample ablation of any slice of a hook point.

Each function returns a list of ``(name, fn)`` hooks for ``model.hooks(...)`` / ``run_with_hooks``:

    >>> with model.hooks(ablate_heads(model, layer=9, heads=[6, 9], how="mean", reference=texts)):
    ...     logits = model(prompt)
    >>> model.run_with_hooks(prompt, ablate_neurons(model, 3, [17, 42]))          # zero ablation
    >>> model.run_with_hooks(prompt, ablate_mlp(model, 5, how="resample", reference=other_prompts))

The slice is chosen by ``positions`` (all by default), ``heads`` (per-head points: q, k, v, z, pattern) and
``neurons`` (the last axis of residual-like and MLP points). Mean ablation averages over the reference prompts and
positions (``per_position=True`` keeps one mean per position); resample ablation replaces each prompt's slice with
that of a reference prompt drawn at random (fixed by ``seed``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from ..models.hooked import HookedModel
from ..models.tokens import Inputs
from .patching import HEAD_KINDS

How = Literal["zero", "mean", "resample"]
Hooks = list[tuple[str, Callable]]


def _axis_mask(n: int, sel: int | Sequence[int] | None, what: str, valid: str) -> Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    if sel is None:
        mask[:] = True
        return mask
    idx = [sel] if isinstance(sel, int) else list(sel)
    for i in idx:
        if not -n <= i < n:
            raise ValueError(f"{what} {i} is out of range: {valid} has {n} (0..{n - 1})")
    mask[idx] = True
    return mask


def _mask(kind: str, shape: tuple[int, ...], positions, heads, neurons, name: str) -> Tensor:
    """Boolean mask over the non-batch axes of an activation of ``kind`` with ``shape`` (batch first)."""
    if kind in HEAD_KINDS:  # (B, T, H, Dh)
        if neurons is not None:
            raise ValueError(f"neurons= applies to residual-like and MLP points, not {name!r}; use heads=")
        t, h, d = shape[1:]
        return (_axis_mask(t, positions, "position", "the input")[:, None, None]
                & _axis_mask(h, heads, "head", name)[None, :, None]).expand(t, h, d)
    if kind == "attn.pattern":  # (B, H, Q, K)
        if neurons is not None:
            raise ValueError(f"neurons= does not apply to {name!r}")
        h, q, k = shape[1:]
        return (_axis_mask(h, heads, "head", name)[:, None, None]
                & _axis_mask(q, positions, "position", "the input")[None, :, None]).expand(h, q, k)
    if heads is not None:
        raise ValueError(f"heads= needs a per-head point ({', '.join(HEAD_KINDS)}, attn.pattern), got {name!r}")
    t, d = shape[1], shape[-1]
    return (_axis_mask(t, positions, "position", "the input")[:, None]
            & _axis_mask(d, neurons, "neuron", name)[None, :])


def ablate(model: HookedModel, name: str, how: How = "zero", *, positions: int | Sequence[int] | None = None,
           heads: int | Sequence[int] | None = None, neurons: int | Sequence[int] | None = None,
           reference: Inputs | None = None, per_position: bool = False, seed: int = 0) -> Hooks:
    """Hooks ablating a slice of hook point ``name`` (the generic function behind every ablation helper)."""
    point = model.resolve(name)
    if how not in ("zero", "mean", "resample"):
        raise ValueError(f"how must be 'zero', 'mean' or 'resample', got {how!r}")
    if how != "zero" and reference is None:
        raise ValueError(f"{how} ablation needs reference= inputs (a dataset to take means or samples from)")
    ref: Tensor | None = None
    if reference is not None and how != "zero":
        with torch.no_grad():
            _, cache = model.run_with_cache(reference, names=[point.name])
        ref = cache[point.name]  # (N, ...)
        mask_ref = cache.tokens.attention_mask
        if how == "mean":
            if per_position:
                ref = ref.mean(0)  # (T, ...) or for the pattern (H, Q, K)
            elif point.kind == "attn.pattern":
                ref = ref.mean(0)  # a pattern keeps its (H, Q, K) layout; positions are not interchangeable
            else:
                w = (torch.ones(ref.shape[:2]) if mask_ref is None else mask_ref.to(ref.dtype)).to(ref.device)
                w = w.reshape(*w.shape, *([1] * (ref.ndim - 2)))
                ref = (ref * w).sum((0, 1)) / w.sum()  # (...) one mean over prompts and real tokens
    gen = torch.Generator().manual_seed(seed)

    def fn(act: Tensor, hook) -> Tensor:
        mask = _mask(point.kind, tuple(act.shape), positions, heads, neurons, point.name).to(act.device)
        if how == "zero":
            value = torch.zeros((), dtype=act.dtype, device=act.device)
        elif how == "mean":
            value = ref.to(act.dtype)
            if per_position or point.kind == "attn.pattern":
                value = _fit_positions(value, act.shape[1:], point.kind, name)
        else:
            rows = torch.randint(0, ref.shape[0], (act.shape[0],), generator=gen)
            value = _fit_positions(ref[rows].to(act.dtype), act.shape, point.kind, name, batch=True)
        return torch.where(mask, value, act)

    return [(point.name, fn)]


def _fit_positions(value: Tensor, shape: tuple[int, ...], kind: str, name: str, batch: bool = False) -> Tensor:
    """Crop reference activations to the ablated input's positions; raise when the reference is too short."""
    off = 1 if batch else 0
    axes = (1 + off, 2 + off) if kind == "attn.pattern" else (off,)
    for ax in axes:
        if value.shape[ax] < shape[ax]:
            raise ValueError(f"reference activations at {name!r} have {value.shape[ax]} positions but the input has "
                             f"{shape[ax]}; give reference prompts at least as long")
        value = value.narrow(ax, 0, shape[ax])
    return value


def _block(kind: str, model: HookedModel, layer: int, *args, **kwargs) -> Hooks:
    return ablate(model, f"blocks.{layer}.{kind}", *args, **kwargs)


def ablate_heads(model: HookedModel, layer: int, heads: int | Sequence[int] | None = None, how: How = "zero",
                 **kwargs) -> Hooks:
    """Ablate attention heads of ``layer`` at ``attn.z`` (their output before the output projection)."""
    return ablate(model, f"blocks.{layer}.attn.z", how, heads=heads, **kwargs)


def ablate_neurons(model: HookedModel, layer: int, neurons: int | Sequence[int] | None = None, how: How = "zero",
                   **kwargs) -> Hooks:
    """Ablate MLP neurons of ``layer`` at ``mlp.post``."""
    return ablate(model, f"blocks.{layer}.mlp.post", how, neurons=neurons, **kwargs)


ablate_mlp = partial(_block, "mlp_out")
ablate_mlp.__doc__ = "Ablate the whole MLP output of a layer: ``ablate_mlp(model, layer, how, ...)``."
ablate_attn = partial(_block, "attn_out")
ablate_positions = ablate  # positions= on any hook point: ``ablate(model, name, how, positions=[...])``
