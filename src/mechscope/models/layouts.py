"""Reading and writing a hook point's canonical tensor out of a module's raw tensor (see ``adapters.base.Layout``)."""

from __future__ import annotations

import torch
from torch import Tensor

_QKV_INDEX = {"attn.q": 0, "attn.k": 1, "attn.v": 2}


def read(raw: Tensor, layout: str, kind: str, n_heads: int, n_kv_heads: int, d_head: int) -> Tensor:
    """Canonical view of ``raw``. Views share storage where the layout allows, copies never change ``raw``."""
    if layout == "plain" or layout == "heads_bthd":
        return raw
    if layout == "heads":
        return raw.unflatten(-1, (-1, d_head))  # (B, T, H, Dh)
    if layout == "heads_bhtd":
        return raw.transpose(1, 2)  # (B, H, T, Dh) -> (B, T, H, Dh)
    i = _QKV_INDEX[kind]
    if layout == "qkv_gpt2":
        d = n_heads * d_head
        return raw[..., i * d:(i + 1) * d].unflatten(-1, (n_heads, d_head))
    if layout == "qkv_neox":
        return raw.unflatten(-1, (n_heads, 3 * d_head))[..., i * d_head:(i + 1) * d_head]
    raise ValueError(f"unknown layout {layout!r}")


def write(raw: Tensor, new: Tensor, layout: str, kind: str, n_heads: int, n_kv_heads: int, d_head: int) -> Tensor:
    """The raw tensor that reads back as ``new`` (a new tensor; ``raw`` is left untouched)."""
    if layout == "plain" or layout == "heads_bthd":
        return new
    if layout == "heads":
        return new.flatten(-2)
    if layout == "heads_bhtd":
        return new.transpose(1, 2)
    i = _QKV_INDEX[kind]
    if layout == "qkv_gpt2":
        d = n_heads * d_head
        parts = list(raw.split(d, dim=-1))
        parts[i] = new.flatten(-2)
        return torch.cat(parts, dim=-1)
    if layout == "qkv_neox":
        per_head = list(raw.unflatten(-1, (n_heads, 3 * d_head)).split(d_head, dim=-1))
        per_head[i] = new
        return torch.cat(per_head, dim=-1).flatten(-2)
    raise ValueError(f"unknown layout {layout!r}")
