"""Bloom: ALiBi position biases (inside attention, so no hook changes), a LayerNorm right after the token
embedding, fused per-head q/k/v, and residual additions made inside the attention and MLP modules.

- ``embed`` is the embedding LayerNorm's output (the value entering the residual); ``W_E`` is the token embedding
  before that norm.
- ``attn_out`` / ``mlp_out`` are the ``dense`` / ``dense_4h_to_h`` outputs, before the modules add the residual.
- The ALiBi bias HF hands every block is ``(batch*heads, 1, keys)``: ``batch_heads_kwargs`` says so, so that
  patching's shared prefix repeats it per prompt when it fans the batch out.
- Bloom forms its attention probabilities inline, always eagerly: ``attn.pattern`` is the first softmax inside
  ``self_attention`` (with the ALiBi bias and mask applied).
"""

from transformers import PretrainedConfig

from .base import Adapter, Site, fused_qkv_sites


def _unsupported(config: PretrainedConfig) -> str | None:
    if getattr(config, "apply_residual_connection_post_layernorm", False):
        return "apply_residual_connection_post_layernorm=True puts normalised values on the residual stream"
    if getattr(config, "pretraining_tp", 1) > 1 and getattr(config, "slow_but_exact", False):
        return "slow_but_exact=True with pretraining_tp > 1 splits the output projections into slices"
    return None


BLOOM = Adapter(
    name="bloom",
    model_types=("bloom",),
    layers="transformer.h",
    embed="transformer.word_embeddings_layernorm",
    token_embed="transformer.word_embeddings",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("self_attention", "input"),
        **fused_qkv_sites("self_attention.query_key_value", "qkv_neox"),
        "attn.pattern": Site("self_attention", "call", call="softmax"),
        "attn.z": Site("self_attention.dense", "input", "heads"),
        "attn_out": Site("self_attention.dense", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.dense_4h_to_h", "input"),
        "mlp_out": Site("mlp.dense_4h_to_h", "output"),
    },
    attention="self_attention",
    registry_pattern=False,
    norm_kind="layernorm",
    batch_heads_kwargs=("alibi",),
    unsupported=_unsupported,
)
