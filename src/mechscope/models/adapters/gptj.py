"""GPT-J: separate q/k/v projections, rotary on part of each head (inside attention), one LayerNorm feeding
attention and MLP in parallel (no ``resid_mid``), an unembedding with a bias."""

from .base import Adapter, Site, separate_projection_sites

GPTJ = Adapter(
    name="gptj",
    model_types=("gptj",),
    layers="transformer.h",
    embed="transformer.wte",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("attn", "input"),
        **separate_projection_sites("attn"),
        "attn.z": Site("attn.out_proj", "input", "heads"),
        "attn_out": Site("attn", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.fc_out", "input"),
        "mlp_out": Site("mlp", "output"),
    },
    attention="attn",
    norm_kind="layernorm",
    parallel_residual=lambda config: True,
)
