"""OLMo and OLMo-2.

OLMo is Llama-shaped with parameter-free LayerNorms (and optional q/k/v clipping inside attention). OLMo-2 has no
pre-norms: attention and MLP read the raw residual (``attn_in`` = ``resid_pre``, ``mlp_in`` = ``resid_mid``) and
their outputs pass through RMSNorms before joining the residual, so ``attn_out`` / ``mlp_out`` are those norms'
outputs. OLMo-2's q/k norms act on the whole projection (before the split into heads); q / k are read after them.
"""

from dataclasses import replace

from .base import Site, separate_projection_sites
from .llama import ATTN_SITES, LLAMA, MLP_SITES

OLMO = replace(LLAMA, name="olmo", model_types=("olmo",), norm_kind="layernorm")

OLMO2 = replace(
    LLAMA,
    name="olmo2",
    model_types=("olmo2", "olmo3"),
    block_sites={**ATTN_SITES, **MLP_SITES,
                 **separate_projection_sites("self_attn", "q_norm", "k_norm"),
                 "attn_out": Site("post_attention_layernorm", "output"),
                 "mlp_out": Site("post_feedforward_layernorm", "output")},
    attn_out_norm="post_attention_layernorm",
)
