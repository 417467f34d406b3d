"""Canonical hook point names, parsing, TransformerLens aliases and helpful errors.

Every architecture exposes the same names (see ``shared/DESIGN.md``):

    embed, pos_embed (absolute position embeddings only)
    blocks.L.resid_pre, blocks.L.attn_in, blocks.L.attn.q / .k / .v, blocks.L.attn.pattern, blocks.L.attn.z,
    blocks.L.attn_out, blocks.L.resid_mid, blocks.L.mlp_in, blocks.L.mlp.router_logits, blocks.L.mlp.router_weights,
    blocks.L.mlp.post, blocks.L.mlp.expert_out, blocks.L.mlp_out, blocks.L.resid_post
    final_norm, logits

The router and expert points exist only in mixture-of-experts blocks, and ``mlp.post`` only in dense ones: the
kinds of each block come from the model's structure (``HookNamespace.layer_kinds``).

Within a block the list above is also the order in which the points are computed, which is the order hooks on
the same module run in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Per-block hook kinds in computation order.
BLOCK_KINDS: tuple[str, ...] = (
    "resid_pre",
    "attn_in",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.pattern",
    "attn.z",
    "attn_out",
    "resid_mid",
    "mlp_in",
    "mlp.router_logits",
    "mlp.router_weights",
    "mlp.post",
    "mlp.expert_out",
    "mlp_out",
    "resid_post",
)
GLOBAL_BEFORE: tuple[str, ...] = ("embed", "pos_embed")
GLOBAL_AFTER: tuple[str, ...] = ("final_norm", "logits")

# TransformerLens names -> canonical kinds (``blocks.L.hook_resid_post`` style and the usual component names). The one
# table of these aliases: dictionaries.hooknames reads foreign cfg.json hook names through it too.
TL_BLOCK_ALIASES: dict[str, str] = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "resid_post",
    "hook_attn_out": "attn_out",
    "hook_mlp_in": "mlp_in",
    "hook_mlp_out": "mlp_out",
    "ln1.hook_normalized": "attn_in",
    "ln2.hook_normalized": "mlp_in",
    "attn.hook_q": "attn.q",
    "attn.hook_k": "attn.k",
    "attn.hook_v": "attn.v",
    "attn.hook_z": "attn.z",
    "attn.hook_pattern": "attn.pattern",
    "mlp.hook_post": "mlp.post",
    "mlp.hook_in": "mlp_in",  # circuit-tracer's Qwen3 transcoder sets
    "mlp.hook_out": "mlp_out",
}
TL_GLOBAL_ALIASES: dict[str, str] = {
    "hook_embed": "embed",
    "hook_pos_embed": "pos_embed",
    "ln_final.hook_normalized": "final_norm",
}
# Short kind names accepted by ``cache["resid_post", 6]`` and friends.
KIND_ALIASES: dict[str, str] = {
    "q": "attn.q",
    "k": "attn.k",
    "v": "attn.v",
    "z": "attn.z",
    "pattern": "attn.pattern",
    "post": "mlp.post",
    "router_logits": "mlp.router_logits",
    "router_weights": "mlp.router_weights",
    "expert_out": "mlp.expert_out",
    **{k.removeprefix("hook_"): v for k, v in TL_BLOCK_ALIASES.items() if k.startswith("hook_")},
}

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


class HookNameError(KeyError):
    """An unknown or out-of-range hook point name. The message lists close valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass(frozen=True, order=True)
class HookPoint:
    """A parsed canonical hook point. ``layer`` is None for global points (embed, final_norm, logits)."""

    order: int
    name: str
    kind: str
    layer: int | None

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


def block_name(layer: int, kind: str) -> str:
    return f"blocks.{layer}.{kind}"


def normalise_kind(kind: str) -> str:
    """Map a short or TransformerLens kind (``"hook_resid_post"``, ``"z"``) to a canonical block kind."""
    kind = KIND_ALIASES.get(kind, kind)
    return TL_BLOCK_ALIASES.get(kind, kind)


class HookNamespace:
    """All hook points valid for one model, with parsing, ordering and close-match errors."""

    def __init__(self, n_layers: int, block_kinds: tuple[str, ...] | list[tuple[str, ...]],
                 global_kinds: tuple[str, ...]):
        """``block_kinds``: the kinds every block has, or one tuple of kinds per block."""
        self.n_layers = n_layers
        per_layer = list(block_kinds) if block_kinds and not isinstance(block_kinds[0], str) else (
            [tuple(block_kinds)] * n_layers)
        self.layer_kinds: list[tuple[str, ...]] = [tuple(k for k in BLOCK_KINDS if k in ks) for ks in per_layer]
        union = {k for ks in self.layer_kinds for k in ks}
        self.block_kinds = tuple(k for k in BLOCK_KINDS if k in union)
        """Every kind that exists in at least one block, in computation order."""
        before = [g for g in GLOBAL_BEFORE if g in global_kinds]
        after = [g for g in GLOBAL_AFTER if g in global_kinds]
        points: list[HookPoint] = []
        for g in before:
            points.append(HookPoint(len(points), g, g, None))
        for layer in range(n_layers):
            for kind in self.layer_kinds[layer]:
                points.append(HookPoint(len(points), block_name(layer, kind), kind, layer))
        for g in after:
            points.append(HookPoint(len(points), g, g, None))
        self._points = {p.name: p for p in points}

    @property
    def names(self) -> list[str]:
        return list(self._points)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except HookNameError:
            return False
        return True

    def resolve(self, name: str) -> HookPoint:
        """Parse a canonical or TransformerLens-style name; raise :class:`HookNameError` naming valid ones."""
        if not isinstance(name, str):
            raise HookNameError(f"hook point names are strings, got {type(name).__name__}: {name!r}")
        canonical = self._canonical(name)
        point = self._points.get(canonical)
        if point is not None:
            return point
        raise HookNameError(self._explain(name, canonical))

    def _canonical(self, name: str) -> str:
        if name in TL_GLOBAL_ALIASES:
            return TL_GLOBAL_ALIASES[name]
        m = _BLOCK_RE.match(name)
        if m:
            return block_name(int(m.group(1)), normalise_kind(m.group(2)))
        return name

    def _explain(self, name: str, canonical: str) -> str:
        m = _BLOCK_RE.match(canonical)
        if m and m.group(2) in self.block_kinds:
            layer = int(m.group(1))
            if layer < self.n_layers:
                has = [str(i) for i, ks in enumerate(self.layer_kinds) if m.group(2) in ks]
                return (f"hook point {name!r} does not exist: block {layer} has no {m.group(2)} (only blocks "
                        f"{', '.join(has)} do); its hook kinds are: {', '.join(self.layer_kinds[layer])}")
            return (
                f"hook point {name!r}: layer {layer} is out of range; this model has layers 0..{self.n_layers - 1}"
            )
        if m and m.group(2) in BLOCK_KINDS:
            return (
                f"hook point {name!r} does not exist for this architecture; its block hook kinds are: "
                + ", ".join(self.block_kinds)
            )
        pool = self.names + [f"blocks.{{L}}.{k}" for k in self.block_kinds]
        close = difflib.get_close_matches(canonical, pool, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (
            f"unknown hook point {name!r}.{hint} Valid names are embed, final_norm, logits and blocks.L.<kind> "
            f"with L in 0..{self.n_layers - 1} and kind one of: {', '.join(self.block_kinds)}."
        )

    def filter(self, names: str | Iterable[str] | Callable[[str], bool] | None) -> list[HookPoint]:
        """Resolve ``names`` (None = all, a string, an iterable of strings, or a predicate on names), sorted."""
        if names is None:
            points = list(self._points.values())
        elif isinstance(names, str):
            points = [self.resolve(names)]
        elif callable(names):
            points = [p for p in self._points.values() if names(p.name)]
        else:
            points = sorted({self.resolve(n) for n in names})
        return sorted(points)
