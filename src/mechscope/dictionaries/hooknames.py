"""Canonical mechscope hook names <-> TransformerLens names, as written into SAELens ``cfg.json`` files.

mechscope dictionaries carry canonical names (``blocks.6.resid_post``). SAELens and Neuronpedia files carry
TransformerLens names (``blocks.6.hook_resid_post``). These two small maps translate in both directions; names
that are neither are passed through unchanged.
"""

from __future__ import annotations

import re

from ..models.hook_points import TL_BLOCK_ALIASES, TL_GLOBAL_ALIASES

# canonical block kind -> TransformerLens suffix (export direction: the one name written for each kind; every one of
# them reads back through the alias table of models.hook_points, the single source of the import direction)
_TO_TL: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_in": "ln2.hook_normalized",
    "mlp_out": "hook_mlp_out",
    "mlp.post": "mlp.hook_post",
    "attn.z": "attn.hook_z",
    "attn.q": "attn.hook_q",
    "attn.k": "attn.hook_k",
    "attn.v": "attn.hook_v",
    "attn.pattern": "attn.hook_pattern",
    "attn_in": "ln1.hook_normalized",
}
# TransformerLens suffix -> canonical kind (import direction; several TL names map to one kind)
_FROM_TL: dict[str, str] = TL_BLOCK_ALIASES
_GLOBAL_TO_TL = {"embed": "hook_embed", "pos_embed": "hook_pos_embed", "final_norm": "ln_final.hook_normalized"}
_GLOBAL_FROM_TL: dict[str, str] = TL_GLOBAL_ALIASES
assert all(_FROM_TL[tl] == kind for kind, tl in _TO_TL.items()), "an export name that does not read back"
assert all(_GLOBAL_FROM_TL[tl] == kind for kind, tl in _GLOBAL_TO_TL.items()), "an export name that does not read back"
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def to_transformer_lens(name: str | None) -> str | None:
    """``blocks.6.resid_post`` -> ``blocks.6.hook_resid_post``; unknown names unchanged."""
    if name is None:
        return None
    if name in _GLOBAL_TO_TL:
        return _GLOBAL_TO_TL[name]
    m = _BLOCK_RE.match(name)
    if m and m.group(2) in _TO_TL:
        return f"blocks.{m.group(1)}.{_TO_TL[m.group(2)]}"
    return name


def to_canonical(name: str | None) -> str | None:
    """``blocks.6.hook_resid_post`` -> ``blocks.6.resid_post``; canonical or unknown names unchanged."""
    if name is None:
        return None
    if name in _GLOBAL_FROM_TL:
        return _GLOBAL_FROM_TL[name]
    m = _BLOCK_RE.match(name)
    if m and m.group(2) in _FROM_TL:
        return f"blocks.{m.group(1)}.{_FROM_TL[m.group(2)]}"
    return name


def block_hook(layer: int, kind: str) -> str:
    """Canonical name of a per-block hook point: ``block_hook(3, "mlp_out") == "blocks.3.mlp_out"``."""
    return f"blocks.{layer}.{kind}"
