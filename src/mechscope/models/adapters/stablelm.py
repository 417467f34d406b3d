"""StableLM: Llama-shaped attention and MLP with LayerNorms, partial rotary, optional per-head q/k LayerNorms (q / k
are read after them when present) and an optional parallel residual (``use_parallel_residual``)."""

from .base import Adapter, qk_norm_sites
from .llama import ATTN_SITES, MLP_SITES

STABLELM = Adapter(
    name="stablelm",
    model_types=("stablelm",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    block_sites={**ATTN_SITES, **qk_norm_sites("self_attn", "q_layernorm", "k_layernorm", "heads_bhtd"),
                 **MLP_SITES},
    attention="self_attn",
    norm_kind="layernorm",
    parallel_residual=lambda config: bool(getattr(config, "use_parallel_residual", False)),
)
