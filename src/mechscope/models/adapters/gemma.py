"""Gemma (v1), Gemma 2 and Gemma 3 (text): ``(1 + w)`` RMSNorm and embeddings scaled by sqrt(d_model) inside the
embedding module (so ``embed`` and ``W_E`` include the scale).

Gemma 1 is Llama-shaped. Gemma 2/3 put sandwich norms around attention and MLP: ``attn_out`` / ``mlp_out`` are the
outputs of the post-norms, i.e. the values actually added to the residual. Gemma 3 reads q / k after its per-head
q/k norms (laid out batch, heads, pos, d_head in HF).
"""

from dataclasses import replace

from .base import Site, SiteSpec, separate_projection_sites
from .llama import ATTN_SITES, LLAMA, MLP_SITES

GEMMA = replace(LLAMA, name="gemma", model_types=("gemma",), norm_kind="rms_one_plus")

GEMMA2_SITES: dict[str, SiteSpec] = {**ATTN_SITES, **MLP_SITES,
                "attn_out": Site("post_attention_layernorm", "output"),
                "mlp_out": Site("post_feedforward_layernorm", "output")}
GEMMA2 = replace(
    GEMMA,
    name="gemma2",
    model_types=("gemma2",),
    block_sites=GEMMA2_SITES,
    attn_out_norm="post_attention_layernorm",
)

GEMMA3 = replace(
    GEMMA2,
    name="gemma3",
    model_types=("gemma3_text",),
    block_sites={**GEMMA2_SITES,
                 **separate_projection_sites("self_attn", "q_norm", "k_norm", layout="heads_bhtd")},
)
