"""GPT-Neo: GPT-2-shaped blocks with separate q/k/v projections (no score scaling), alternating global and local
(windowed) attention layers and absolute position embeddings (``pos_embed``). It forms its attention
probabilities inline, always eagerly: ``attn.pattern`` is the first softmax inside ``attn.attention``."""

from .base import Adapter, Site, separate_projection_sites

GPT_NEO = Adapter(
    name="gpt_neo",
    model_types=("gpt_neo",),
    layers="transformer.h",
    embed="transformer.wte",
    pos_embed="transformer.wpe",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("attn", "input"),
        **separate_projection_sites("attn.attention"),
        "attn.pattern": Site("attn.attention", "call", call="softmax"),
        "attn.z": Site("attn.attention.out_proj", "input", "heads"),
        "attn_out": Site("attn", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.c_proj", "input"),
        "mlp_out": Site("mlp", "output"),
    },
    attention="attn.attention",
    registry_pattern=False,
    norm_kind="layernorm",
)
