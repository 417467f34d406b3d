"""The declarative adapter: where each canonical hook point lives inside a Hugging Face model.

An adapter names module paths; it contains no forward code. The hooked model attaches PyTorch hooks to those
modules, so every hook observes or changes HF's own computation. To support a new family, add one file next to
this one that builds an :class:`Adapter` and register it in ``adapters/__init__.py`` (see the README).

Paths of block sites are relative to one decoder block; the others are relative to the HF model root. A block kind
may list several candidate sites: the first whose module exists in a given block is used there, and a kind with no
existing candidate is absent from that block (a Qwen3-MoE block without q/k norms, a dense layer of a mixed MoE
model). The kinds of every block are therefore read from the model's own structure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from torch import nn
from transformers import PretrainedConfig

# How a module's tensor is viewed as the canonical tensor of a hook point (see ``models/layouts.py``):
#   plain        the tensor itself
#   heads        (batch, pos, heads*d_head) viewed as (batch, pos, heads, d_head)
#   heads_bhtd   (batch, heads, pos, d_head) transposed to (batch, pos, heads, d_head)
#   heads_bthd   (batch, pos, heads, d_head) already
#   qkv_split    fused (batch, pos, (heads + 2*kv_heads)*d_head) projection: [q | k | v] blocks
#                (GPT-2, Phi-3, Falcon MQA)
#   qkv_neox     fused (batch, pos, heads*3*d_head) projection, per head [q | k | v] (GPT-NeoX, Bloom)
#   qkv_grouped  fused projection, per KV group [q ... q | k | v] (Falcon's new decoder architecture)
#   flat         (batch*pos, ...) viewed as (batch, pos, ...) (OPT's MLP, MoE routers)
#   router_dense a router's (logits, top-k weights, top-k indices) output as dense (batch, pos, experts) weights
#   experts      a fused experts module's output split into each expert's (batch, pos, experts, d_model) share
Layout = Literal["plain", "heads", "heads_bhtd", "heads_bthd", "qkv_split", "qkv_neox", "qkv_grouped", "flat",
                 "router_dense", "experts"]
NormKind = Literal["rms", "rms_one_plus", "layernorm"]


@dataclass(frozen=True)
class Site:
    """A module's input or output (or the result of one torch function called inside it), seen through a layout."""

    path: str
    io: Literal["input", "output", "call"]
    layout: Layout = "plain"
    scale: str | None = None
    """A config attribute the module's tensor is multiplied by to give the canonical tensor (Granite's multipliers:
    ``attn_out`` is ``o_proj(z) * residual_multiplier``, the value HF adds to the residual). Writes divide by it."""
    call: str | None = None
    """With ``io="call"``: the ``torch.nn.functional`` function whose first result inside the module is the site
    (``"softmax"`` for attention probabilities formed inline, ``"linear"`` for router logits). A replacement is
    handed back to HF's code in place of that result, so everything downstream sees it."""
    copy: bool = False
    """HF later edits this tensor in place (Falcon adds the attention output into the MLP output): hooks and caches
    see a copy, and the model continues from that copy (same values)."""


SiteSpec = Site | tuple[Site, ...]


def _always_false(config: PretrainedConfig) -> bool:
    return False


def _no_problem(config: PretrainedConfig) -> str | None:
    return None


@dataclass(frozen=True)
class Adapter:
    """Maps the canonical hook points of one architecture family onto HF module paths."""

    name: str
    """Family name shown to users, e.g. ``"llama"``."""
    model_types: tuple[str, ...]
    """HF ``config.model_type`` values this adapter handles."""
    layers: str
    """Path of the ``nn.ModuleList`` of decoder blocks."""
    embed: str | Site
    """Where ``embed`` is read: the value entering the residual stream (after any embedding scale, multiplier or
    embedding norm). A plain path means that module's output."""
    final_norm: str
    unembed: str
    block_sites: dict[str, SiteSpec] | Callable[[PretrainedConfig], dict[str, SiteSpec]]
    """Sites (or candidate sites, first existing wins) for the block kinds that live on a submodule: attn_in,
    attn.q/k/v, (attn.pattern,) attn.z, attn_out, mlp_in, mlp.post, mlp_out, and for mixture-of-experts blocks
    mlp.router_logits,
    mlp.router_weights, mlp.expert_out. resid_pre / resid_post are the block's input / output; resid_mid is
    derived. A function of the HF config when the layout depends on it (Falcon)."""
    attention: str
    """Path (in a block) of the attention module."""
    norm_kind: NormKind
    """How the final norm (and other norms) compute: RMSNorm ``w * x / rms``, Gemma's ``(1 + w) * x / rms``, or
    LayerNorm."""
    registry_pattern: bool = True
    """``attn.pattern`` comes through HF's attention-function registry (see ``models/attention.py``). Families
    that form their probabilities inline (Bloom, Falcon) set False and list ``attn.pattern`` in ``block_sites``
    as a ``call`` site on ``softmax`` (or leave it out where no HF path forms correct probabilities)."""
    token_embed: str | None = None
    """Module whose weight is ``W_E`` when it is not the ``embed`` site's module (Bloom reads ``embed`` after its
    embedding LayerNorm)."""
    pos_embed: str | None = None
    """Absolute position embedding module, if the family has one (``pos_embed`` hook point)."""
    attn_out_norm: str | None = None
    """Gemma 2/3, OLMo-2: the norm applied to the attention output before it joins the residual (per-head splits
    are linearised through it with its cached scale)."""
    unembed_scale: Callable[[PretrainedConfig], float] | None = None
    """A factor HF applies to the unembedding's output (Granite ``1/logits_scaling``, Cohere ``logit_scale``); it is
    folded into ``W_U`` and ``b_U`` so that ``final_norm @ W_U + b_U`` are the logits."""
    parallel_residual: Callable[[PretrainedConfig], bool] = field(default=_always_false)
    """Whether attention and MLP read the same residual (GPT-NeoX, GPT-J, Phi, Cohere); then ``resid_mid`` does not
    exist."""
    n_kv_heads: Callable[[PretrainedConfig], int] | None = None
    """The number of key/value heads when the config does not say it as ``num_key_value_heads`` (Falcon)."""
    batch_heads_kwargs: tuple[str, ...] = ()
    """Keyword arguments HF passes to every block whose first axis is batch × heads instead of batch (Bloom's
    ALiBi bias, ``(batch*heads, 1, keys)``). Code that changes the batch between blocks (patching's shared prefix)
    repeats them per prompt, not per row."""
    unsupported: Callable[[PretrainedConfig], str | None] = field(default=_no_problem)
    """Why a config variant of this family is not supported (None when it is), e.g. OPT-350m's post-norms."""

    def sites(self, config: PretrainedConfig) -> dict[str, SiteSpec]:
        return self.block_sites(config) if callable(self.block_sites) else self.block_sites

    def embed_site(self) -> Site:
        return self.embed if isinstance(self.embed, Site) else Site(self.embed, "output")

    def global_kinds(self) -> tuple[str, ...]:
        kinds = ["embed", "final_norm", "logits"]
        if self.pos_embed:
            kinds.append("pos_embed")
        return tuple(kinds)


def resolve_sites(adapter: Adapter, config: PretrainedConfig, block: nn.Module) -> dict[str, Site]:
    """The site of every block kind that exists in ``block`` (an ``nn.Module``), candidates tried in order."""
    found: dict[str, Site] = {}
    for kind, spec in adapter.sites(config).items():
        for site in spec if isinstance(spec, tuple) else (spec,):
            try:
                block.get_submodule(site.path)
            except AttributeError:
                continue
            found[kind] = site
            break
    return found


def separate_projection_sites(prefix: str, q: str = "q_proj", k: str = "k_proj", v: str = "v_proj",
                              layout: Layout = "heads") -> dict[str, Site]:
    """q/k/v sites for families with one Linear per projection."""
    return {
        "attn.q": Site(f"{prefix}.{q}", "output", layout),
        "attn.k": Site(f"{prefix}.{k}", "output", layout),
        "attn.v": Site(f"{prefix}.{v}", "output", "heads"),
    }


def qk_norm_sites(prefix: str, q_norm: str, k_norm: str, layout: Layout) -> dict[str, tuple[Site, ...]]:
    """q/k read after optional per-head q/k norms: the norm's output where the block has it, else the projection."""
    plain = separate_projection_sites(prefix)
    return {
        "attn.q": (Site(f"{prefix}.{q_norm}", "output", layout), plain["attn.q"]),
        "attn.k": (Site(f"{prefix}.{k_norm}", "output", layout), plain["attn.k"]),
    }


def fused_qkv_sites(path: str, layout: Layout) -> dict[str, Site]:
    """q/k/v sites read out of one fused projection."""
    return {kind: Site(path, "output", layout) for kind in ("attn.q", "attn.k", "attn.v")}


def moe_sites(prefix: str = "mlp", router: str = "gate", experts: str = "experts") -> dict[str, Site]:
    """Mixture-of-experts hook points of a block whose MLP is a router plus a fused experts module (HF 5 layout).

    ``mlp.router_logits`` is the router's linear output, before softmax and top-k: replacing it re-routes through
    HF's own routing code. ``mlp.router_weights`` are the routing weights as a dense (batch, pos, experts) tensor,
    zero for experts a token is not sent to: replacing it sends each token to the experts given non-zero weight.
    ``mlp.expert_out`` is each expert's weighted contribution to the experts' sum (zero where not routed).
    """
    return {
        "mlp.router_logits": Site(f"{prefix}.{router}", "call", "flat", call="linear"),
        "mlp.router_weights": Site(f"{prefix}.{router}", "output", "router_dense"),
        "mlp.expert_out": Site(f"{prefix}.{experts}", "output", "experts"),
    }
