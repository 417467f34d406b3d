"""Llama family: Llama, Mistral, Qwen2, Qwen3 (q/k norms), SmolLM, and other Llama-shaped decoders."""

from dataclasses import replace

from .base import Adapter, Site, separate_projection_sites

_SITES = {
    "attn_in": Site("self_attn", "input"),
    **separate_projection_sites("self_attn"),
    "attn.z": Site("self_attn.o_proj", "input", "heads"),
    "attn_out": Site("self_attn", "output"),
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
    block_sites=_SITES,
    attention="self_attn",
    norm_kind="rms",
)

# Qwen3 normalises q and k per head before the rotary embedding: q / k are read after those norms.
QWEN3 = replace(
    LLAMA,
    name="qwen3",
    model_types=("qwen3",),
    block_sites={**_SITES, **separate_projection_sites("self_attn", "q_norm", "k_norm", layout="heads_bthd")},
)
