"""Mixture-of-experts families: Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE (Llama / Qwen / OLMo-2-shaped attention).

Each MoE block is a router (``mlp.gate``) and one fused experts module (``mlp.experts``); Qwen2-MoE adds a gated
shared expert. Hook points of an MoE block (see ``base.moe_sites``):

- ``mlp_in`` / ``mlp_out``: the block's input and output, as in dense models (dictionaries train on them).
- ``mlp.router_logits`` (batch, pos, experts): router logits before softmax / top-k; a replacement re-routes.
- ``mlp.router_weights`` (batch, pos, experts): routing weights, zero for experts not chosen; a replacement sends
  each token to the experts it gives non-zero weight, with those weights.
- ``mlp.expert_out`` (batch, pos, experts, d_model): each expert's weighted output; it sums over experts to the
  experts' part of ``mlp_out`` (all of it for Mixtral and Qwen3-MoE; Qwen2-MoE adds its shared expert's gated
  output). Reading it runs each token's experts once more, one top-k slot at a time, through HF's experts module.
- ``mlp.post`` is absent in MoE blocks: the experts' hidden activations live inside the fused experts module. Dense
  layers of a mixed model (Qwen ``mlp_only_layers``) keep ``mlp.post`` and have no router or expert points.
"""

from dataclasses import replace

from .base import Adapter, Site, moe_sites, separate_projection_sites
from .llama import ATTN_SITES, QWEN3_QK

_MLP = {
    "mlp_in": Site("mlp", "input"),
    "mlp.post": Site("mlp.down_proj", "input"),  # dense layers only
    "mlp_out": Site("mlp", "output"),
    **moe_sites(),  # MoE layers only
}

MIXTRAL = Adapter(
    name="mixtral",
    model_types=("mixtral",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    block_sites={**ATTN_SITES, **_MLP},
    attention="self_attn",
    norm_kind="rms",
)

QWEN2_MOE = replace(MIXTRAL, name="qwen2_moe", model_types=("qwen2_moe",))
QWEN3_MOE = replace(MIXTRAL, name="qwen3_moe", model_types=("qwen3_moe",), block_sites={**ATTN_SITES, **QWEN3_QK,
                                                                                         **_MLP})

# OLMoE: Llama-shaped blocks with OLMo-2's full-width q/k norms (q / k read after them) and an MoE MLP.
OLMOE = replace(MIXTRAL, name="olmoe", model_types=("olmoe",), block_sites={
    **ATTN_SITES, **separate_projection_sites("self_attn", "q_norm", "k_norm"), **_MLP})
