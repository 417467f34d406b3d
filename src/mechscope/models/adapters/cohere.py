"""Cohere (Command R): one LayerNorm (no bias) feeds attention and MLP in parallel, so there is no ``resid_mid`` and
``resid_post = resid_pre + attn_out + mlp_out``. Optional per-head q/k LayerNorms (q / k read after them when
present). HF multiplies the logits by ``logit_scale``: ``W_U`` includes it."""

from .base import Adapter, qk_norm_sites
from .llama import ATTN_SITES, MLP_SITES

COHERE = Adapter(
    name="cohere",
    model_types=("cohere",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    block_sites={**ATTN_SITES, **qk_norm_sites("self_attn", "q_norm", "k_norm", "heads_bthd"), **MLP_SITES},
    attention="self_attn",
    norm_kind="layernorm",
    unembed_scale=lambda config: config.logit_scale,
    parallel_residual=lambda config: True,
)
