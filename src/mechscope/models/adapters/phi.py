"""Phi (1, 1.5, 2) and Phi-3.

Phi: one LayerNorm feeds attention and MLP in parallel (no ``resid_mid``); optional per-head q/k LayerNorms (q / k
are read after them when present); partial rotary inside attention. Phi-3: Llama-shaped with a fused ``qkv_proj``
([q | k | v] with grouped KV heads) and a fused ``gate_up_proj``.
"""

from .base import Adapter, Site, fused_qkv_sites, qk_norm_sites, separate_projection_sites

PHI = Adapter(
    name="phi",
    model_types=("phi",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.final_layernorm",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("self_attn", "input"),
        **separate_projection_sites("self_attn"),
        **qk_norm_sites("self_attn", "q_layernorm", "k_layernorm", "heads_bhtd"),
        "attn.z": Site("self_attn.dense", "input", "heads"),
        "attn_out": Site("self_attn", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.fc2", "input"),
        "mlp_out": Site("mlp", "output"),
    },
    attention="self_attn",
    norm_kind="layernorm",
    parallel_residual=lambda config: True,
)

PHI3 = Adapter(
    name="phi3",
    model_types=("phi3",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("self_attn", "input"),
        **fused_qkv_sites("self_attn.qkv_proj", "qkv_split"),
        "attn.z": Site("self_attn.o_proj", "input", "heads"),
        "attn_out": Site("self_attn", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.down_proj", "input"),
        "mlp_out": Site("mlp", "output"),
    },
    attention="self_attn",
    norm_kind="rms",
)
