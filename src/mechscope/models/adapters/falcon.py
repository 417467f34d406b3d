"""Falcon: three layouts of the fused q/k/v projection and three block structures, chosen by the config.

- q/k/v: ``new_decoder_architecture`` (40B/180B) groups [q ... q | k | v] per KV head; ``multi_query`` (7B) is
  [all q | one k | one v]; otherwise (RW-1B) per head [q | k | v].
- Blocks: the new architecture and ``parallel_attn`` run attention and MLP on the same residual (no ``resid_mid``);
  RW models are sequential. HF adds the attention output into the MLP output in place, so ``mlp_out`` is a copy.
- Attention probabilities are formed inline on Falcon's eager path: ``attn.pattern`` is the first softmax inside
  ``self_attention``; while a pattern hook is attached, the call runs that path instead of SDPA. ALiBi models
  (``alibi=True``, Falcon-RW) have no ``attn.pattern``: HF 5's eager path adds the ALiBi bias twice (once in the
  mask, once in the scores), so its probabilities are not those of the default SDPA path.
"""

from transformers import PretrainedConfig

from .base import Adapter, Layout, Site, SiteSpec, fused_qkv_sites


def _sites(config: PretrainedConfig) -> dict[str, SiteSpec]:
    qkv: Layout
    if getattr(config, "new_decoder_architecture", False):
        qkv = "qkv_grouped"
    elif getattr(config, "multi_query", False):
        qkv = "qkv_split"
    else:
        qkv = "qkv_neox"
    pattern = {} if getattr(config, "alibi", False) else {
        "attn.pattern": Site("self_attention", "call", call="softmax")}
    return {
        "attn_in": Site("self_attention", "input"),
        **fused_qkv_sites("self_attention.query_key_value", qkv),
        **pattern,
        "attn.z": Site("self_attention.dense", "input", "heads"),
        "attn_out": Site("self_attention", "output"),
        "mlp_in": Site("mlp", "input"),
        "mlp.post": Site("mlp.dense_4h_to_h", "input"),
        "mlp_out": Site("mlp", "output", copy=True),
    }


def _kv_heads(config: PretrainedConfig) -> int:
    if getattr(config, "new_decoder_architecture", False):
        return int(config.num_kv_heads)
    return 1 if getattr(config, "multi_query", False) else int(config.num_attention_heads)


FALCON = Adapter(
    name="falcon",
    model_types=("falcon",),
    layers="transformer.h",
    embed="transformer.word_embeddings",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    block_sites=_sites,
    attention="self_attention",
    registry_pattern=False,
    norm_kind="layernorm",
    n_kv_heads=_kv_heads,
    parallel_residual=lambda config: bool(config.parallel_attn or config.new_decoder_architecture),
)
