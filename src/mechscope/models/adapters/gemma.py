"""Gemma 2 and Gemma 3 (text): sandwich norms around attention and MLP, ``(1 + w)`` RMSNorm, scaled embeddings.

``attn_out`` / ``mlp_out`` are the outputs of the post-norms, i.e. the values actually added to the residual.
Gemma 3 reads q / k after its per-head q/k norms (laid out batch, heads, pos, d_head in HF).
"""

from dataclasses import replace

from .base import Adapter, Site, separate_projection_sites

_SITES = {
    "attn_in": Site("self_attn", "input"),
    **separate_projection_sites("self_attn"),
    "attn.z": Site("self_attn.o_proj", "input", "heads"),
    "attn_out": Site("post_attention_layernorm", "output"),
    "mlp_in": Site("mlp", "input"),
    "mlp.post": Site("mlp.down_proj", "input"),
    "mlp_out": Site("post_feedforward_layernorm", "output"),
}

GEMMA2 = Adapter(
    name="gemma2",
    model_types=("gemma2",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    block_sites=_SITES,
    attention="self_attn",
    norm_kind="rms_one_plus",
    attn_out_norm="post_attention_layernorm",
)

GEMMA3 = replace(
    GEMMA2,
    name="gemma3",
    model_types=("gemma3_text",),
    block_sites={**_SITES, **separate_projection_sites("self_attn", "q_norm", "k_norm", layout="heads_bhtd")},
)
