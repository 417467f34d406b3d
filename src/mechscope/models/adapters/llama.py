"""Llama family: Llama, Mistral, Qwen2, Qwen3 (q/k norms), SmolLM / SmolLM3, and other Llama-shaped decoders.

SmolLM3 leaves out the rotary embedding in some layers (NoPE); that happens inside attention and changes no hook.
"""

from dataclasses import replace

from .base import Adapter, Site, separate_projection_sites

ATTN_SITES = {
    "attn_in": Site("self_attn", "input"),
    **separate_projection_sites("self_attn"),
    "attn.z": Site("self_attn.o_proj", "input", "heads"),
    "attn_out": Site("self_attn", "output"),
}
"""Attention sites shared by every family laid out as Llama's ``self_attn`` (q/k/v/o_proj)."""

MLP_SITES = {
    "mlp_in": Site("mlp", "input"),
    "mlp.post": Site("mlp.down_proj", "input"),
    "mlp_out": Site("mlp", "output"),
}

LLAMA = Adapter(
    name="llama",
    model_types=("llama", "mistral", "qwen2"),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    block_sites={**ATTN_SITES, **MLP_SITES},
    attention="self_attn",
    norm_kind="rms",
)

# Qwen3 normalises q and k per head before the rotary embedding: q / k are read after those norms.
QWEN3_QK = separate_projection_sites("self_attn", "q_norm", "k_norm", layout="heads_bthd")
QWEN3 = replace(LLAMA, name="qwen3", model_types=("qwen3",), block_sites={**ATTN_SITES, **MLP_SITES, **QWEN3_QK})

SMOLLM3 = replace(LLAMA, name="smollm3", model_types=("smollm3",))
