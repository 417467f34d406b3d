"""Granite: Llama-shaped, with four multipliers that the hook points include, so decompositions stay exact.

- ``embedding_multiplier``: ``embed`` is the token embedding times it (the value entering the residual), and so is
  ``W_E``.
- ``residual_multiplier``: ``attn_out`` / ``mlp_out`` are the sub-layer outputs times it (the values added to the
  residual); ``W_O`` and ``b_O`` include it, so per-head results still sum to ``attn_out``. A replacement written
  at these points is divided by the multiplier before HF multiplies again (exact up to one rounding).
- ``attention_multiplier`` replaces 1/sqrt(d_head) as the attention score scale inside HF's attention, so
  ``attn.pattern`` includes it.
- ``logits_scaling``: HF divides the unembedding output by it; ``logits`` are HF's logits and ``W_U`` / ``b_U``
  include the division.
"""

from .base import Adapter, Site
from .llama import ATTN_SITES, MLP_SITES

GRANITE = Adapter(
    name="granite",
    model_types=("granite",),
    layers="model.layers",
    embed=Site("model.embed_tokens", "output", scale="embedding_multiplier"),
    final_norm="model.norm",
    unembed="lm_head",
    block_sites={**ATTN_SITES, **MLP_SITES,
                 "attn_out": Site("self_attn", "output", scale="residual_multiplier"),
                 "mlp_out": Site("mlp", "output", scale="residual_multiplier")},
    attention="self_attn",
    norm_kind="rms",
    unembed_scale=lambda config: 1.0 / config.logits_scaling,
)
