"""GPT-2: fused q/k/v projection (Conv1D), LayerNorm, absolute position embeddings."""

from .base import Adapter, Site

GPT2 = Adapter(
    name="gpt2",
    model_types=("gpt2",),
    layers="transformer.h",
    embed="transformer.wte",
    pos_embed="transformer.wpe",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("attn", "input"),
        "attn.q": Site("attn.c_attn", "output", "qkv_split"),
        "attn.k": Site("attn.c_attn", "output", "qkv_split"),
        "attn.v": Site("attn.c_attn", "output", "qkv_split"),
        "attn.z": Site("attn.c_proj", "input", "heads"),
        "attn_out": Site("attn", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.c_proj", "input"),
        "mlp_out": Site("mlp", "output"),
    },
    attention="attn",
    norm_kind="layernorm",
)
