"""Reading and writing a hook point's canonical tensor out of a module's raw tensor (see ``adapters.base.Layout``).

``read`` returns a view where the layout allows (an in-place edit then reaches the model's own tensor), else a new
tensor; ``write`` returns the raw value that reads back as the new tensor, leaving ``raw`` untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

_QKV_INDEX = {"attn.q": 0, "attn.k": 1, "attn.v": 2}


@dataclass
class Ctx:
    """What a layout needs besides the raw tensor."""

    n_heads: int
    n_kv_heads: int
    d_head: int
    n_experts: int = 0
    batch_shape: tuple[int, int] | None = None
    """(batch, pos) of the current forward call, for ``flat`` layouts."""
    module: nn.Module | None = None
    args: tuple = ()
    """The module's positional inputs (the experts layout re-runs the experts module on them)."""


def _bt(ctx: Ctx, raw: Tensor) -> tuple[int, int]:
    if ctx.batch_shape is None or ctx.batch_shape[0] * ctx.batch_shape[1] != raw.shape[0]:
        raise RuntimeError(f"cannot view a flat tensor of {raw.shape[0]} rows as (batch, pos) {ctx.batch_shape}")
    return ctx.batch_shape


def _qkv_split(ctx: Ctx) -> list[int]:
    return [ctx.n_heads * ctx.d_head, ctx.n_kv_heads * ctx.d_head, ctx.n_kv_heads * ctx.d_head]


def read(raw: Any, layout: str, kind: str, ctx: Ctx) -> Tensor:
    if layout in ("plain", "heads_bthd"):
        return raw
    if layout == "heads":
        return raw.unflatten(-1, (-1, ctx.d_head))  # (B, T, H, Dh)
    if layout == "heads_bhtd":
        return raw.transpose(1, 2)  # (B, H, T, Dh) -> (B, T, H, Dh)
    if layout == "flat":
        return raw.view(*_bt(ctx, raw), *raw.shape[1:])  # (B*T, ...) -> (B, T, ...)
    if layout == "qkv_split":
        sizes = _qkv_split(ctx)
        i = _QKV_INDEX[kind]
        # narrow, not split: one view that may be edited in place (split's views may not, under autograd)
        return raw.narrow(-1, sum(sizes[:i]), sizes[i]).unflatten(-1, (-1, ctx.d_head))
    if layout == "qkv_neox":
        i = _QKV_INDEX[kind]
        return raw.unflatten(-1, (ctx.n_heads, 3 * ctx.d_head))[..., i * ctx.d_head:(i + 1) * ctx.d_head]
    if layout == "qkv_grouped":
        g = raw.unflatten(-1, (ctx.n_kv_heads, ctx.n_heads // ctx.n_kv_heads + 2, ctx.d_head))  # (B, T, KV, G+2, Dh)
        if kind == "attn.q":
            return g[..., :-2, :].flatten(-3, -2)  # (B, T, H, Dh), a copy
        return g[..., -2 if kind == "attn.k" else -1, :]  # (B, T, KV, Dh)
    if layout == "router_dense":
        _, weights, index = raw  # (N, k), (N, k)
        dense = torch.zeros(weights.shape[0], ctx.n_experts, dtype=weights.dtype, device=weights.device)
        dense.scatter_(1, index, weights)  # (N, E)
        return dense.view(*_bt(ctx, dense), ctx.n_experts)
    if layout == "experts":
        return _expert_shares(raw, ctx)
    raise ValueError(f"unknown layout {layout!r}")


def write(raw: Any, new: Tensor, layout: str, kind: str, ctx: Ctx, old: Tensor | None = None) -> Any:
    """``old`` is the tensor ``read`` gave (needed by the router and experts layouts)."""
    if layout in ("plain", "heads_bthd"):
        return new
    if layout == "heads":
        return new.flatten(-2)
    if layout == "heads_bhtd":
        return new.transpose(1, 2)
    if layout == "flat":
        return new.reshape(-1, *new.shape[2:])
    if layout == "qkv_split":
        parts = list(raw.split(_qkv_split(ctx), dim=-1))
        parts[_QKV_INDEX[kind]] = new.flatten(-2)
        return torch.cat(parts, dim=-1)
    if layout == "qkv_neox":
        i = _QKV_INDEX[kind]
        per_head = list(raw.unflatten(-1, (ctx.n_heads, 3 * ctx.d_head)).split(ctx.d_head, dim=-1))
        per_head[i] = new
        return torch.cat(per_head, dim=-1).flatten(-2)
    if layout == "qkv_grouped":
        g = raw.unflatten(-1, (ctx.n_kv_heads, ctx.n_heads // ctx.n_kv_heads + 2, ctx.d_head)).clone()
        if kind == "attn.q":
            g[..., :-2, :] = new.unflatten(-2, (ctx.n_kv_heads, -1))
        else:
            g[..., -2 if kind == "attn.k" else -1, :] = new
        return g.flatten(-3)
    if layout == "router_dense":
        return raw if old is not None and torch.equal(new, old) else _reroute(raw, new)
    if layout == "experts":  # the experts' sum changes by the change of the shares (exact when nothing changed)
        assert old is not None
        return raw + (new - old).sum(2).flatten(0, 1).to(raw.dtype)  # (N, D)
    raise ValueError(f"unknown layout {layout!r}")


def _reroute(raw: tuple, new: Tensor) -> tuple:
    """Router output that sends each token to the experts given non-zero weight in ``new`` (B, T, E)."""
    logits, weights, _ = raw[:3]
    dense = new.flatten(0, 1)  # (N, E)
    k = max(int((dense != 0).sum(-1).max()), 1)
    index = dense.abs().topk(k, dim=-1).indices  # (N, k); rows with fewer experts get zero-weight extras
    return (logits, dense.gather(1, index).to(weights.dtype), index, *raw[3:])


def _expert_shares(raw: Tensor, ctx: Ctx) -> Tensor:
    """Each expert's weighted output (B, T, E, D), computed by the experts module itself one top-k slot at a time."""
    hidden, index, weights = ctx.args[:3]  # (N, D), (N, k), (N, k)
    shares = torch.zeros(raw.shape[0], ctx.n_experts, raw.shape[-1], dtype=raw.dtype, device=raw.device)
    rows = torch.arange(raw.shape[0], device=raw.device)
    forward = ctx.module.forward  # the bound forward: no hooks, keeps accelerate's
    for j in range(index.shape[1]):
        out = forward(hidden, index[:, j:j + 1], weights[:, j:j + 1])  # (N, D): slot j's expert, weighted
        shares[rows, index[:, j].to(raw.device)] += out.to(raw.dtype)
    return shares.view(*_bt(ctx, raw), ctx.n_experts, raw.shape[-1])
