"""GPT-NeoX / Pythia: fused per-head q/k/v projection, LayerNorm, usually a parallel residual."""

from .base import Adapter, Site

NEOX = Adapter(
    name="gpt_neox",
    model_types=("gpt_neox",),
    layers="gpt_neox.layers",
    embed="gpt_neox.embed_in",
    final_norm="gpt_neox.final_layer_norm",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("attention", "input"),
        "attn.q": Site("attention.query_key_value", "output", "qkv_neox"),
        "attn.k": Site("attention.query_key_value", "output", "qkv_neox"),
        "attn.v": Site("attention.query_key_value", "output", "qkv_neox"),
        "attn.z": Site("attention.dense", "input", "heads"),
        "attn_out": Site("attention", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.dense_4h_to_h", "input"),
        "mlp_out": Site("mlp", "output"),
    },
    attention="attention",
    norm_kind="layernorm",
    parallel_residual=lambda config: bool(getattr(config, "use_parallel_residual", False)),
)
