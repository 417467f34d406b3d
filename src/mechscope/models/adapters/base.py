"""The declarative adapter: where each canonical hook point lives inside a Hugging Face model.

An adapter names module paths; it contains no forward code. The hooked model attaches PyTorch hooks to those
modules, so every hook observes or changes HF's own computation. To support a new family, add one file next to
this one that builds an :class:`Adapter` and register it in ``adapters/__init__.py`` (see the README).

Paths of block sites are relative to one decoder block; the others are relative to the HF model root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

# How a module's tensor is viewed as the canonical tensor of a hook point:
#   plain      the tensor itself
#   heads      (batch, pos, heads*d_head) viewed as (batch, pos, heads, d_head)
#   heads_bhtd (batch, heads, pos, d_head) transposed to (batch, pos, heads, d_head)
#   heads_bthd (batch, pos, heads, d_head) already
#   qkv_gpt2   fused (batch, pos, 3*d_model) projection, [q | k | v] blocks along the last dim
#   qkv_neox   fused (batch, pos, heads*3*d_head) projection, per head [q | k | v]
Layout = Literal["plain", "heads", "heads_bhtd", "heads_bthd", "qkv_gpt2", "qkv_neox"]
NormKind = Literal["rms", "rms_one_plus", "layernorm"]


@dataclass(frozen=True)
class Site:
    """A module's input or output, seen through a layout."""

    path: str
    io: Literal["input", "output"]
    layout: Layout = "plain"


@dataclass(frozen=True)
class Adapter:
    """Maps the canonical hook points of one architecture family onto HF module paths."""

    name: str
    """Family name shown to users, e.g. ``"llama"``."""
    model_types: tuple[str, ...]
    """HF ``config.model_type`` values this adapter handles."""
    layers: str
    """Path of the ``nn.ModuleList`` of decoder blocks."""
    embed: str
    """Token embedding module; its output is ``embed`` (after any embedding scale)."""
    final_norm: str
    unembed: str
    block_sites: dict[str, Site]
    """Sites for the block kinds that live on a submodule (attn_in, attn.q/k/v, attn.z, attn_out, mlp_in,
    mlp.post, mlp_out). resid_pre / resid_post are the block's input / output; resid_mid is derived."""
    attention: str
    """Path (in a block) of the attention module, whose attention function produces ``attn.pattern``."""
    norm_kind: NormKind
    """How the final norm (and other norms) compute: RMSNorm ``w * x / rms``, Gemma's ``(1 + w) * x / rms``, or
    LayerNorm."""
    pos_embed: str | None = None
    """Absolute position embedding module, if the family has one (``pos_embed`` hook point)."""
    attn_out_norm: str | None = None
    """Gemma 2/3: the norm applied to the attention output before it joins the residual (per-head splits are
    linearised through it with its cached scale)."""
    parallel_residual: Callable[[object], bool] = field(default=lambda config: False)
    """Whether attention and MLP read the same residual (GPT-NeoX); then ``resid_mid`` does not exist."""

    def block_kinds(self, config: object) -> tuple[str, ...]:
        kinds = {"resid_pre", "resid_post", "attn.pattern", *self.block_sites}
        if not self.parallel_residual(config):
            kinds.add("resid_mid")
        return tuple(sorted(kinds))

    def global_kinds(self) -> tuple[str, ...]:
        kinds = ["embed", "final_norm", "logits"]
        if self.pos_embed:
            kinds.append("pos_embed")
        return tuple(kinds)


def separate_projection_sites(prefix: str, q: str = "q_proj", k: str = "k_proj", v: str = "v_proj",
                              layout: Layout = "heads") -> dict[str, Site]:
    """q/k/v sites for families with one Linear per projection."""
    return {
        "attn.q": Site(f"{prefix}.{q}", "output", layout),
        "attn.k": Site(f"{prefix}.{k}", "output", layout),
        "attn.v": Site(f"{prefix}.{v}", "output", "heads"),
    }
