"""OPT: learned absolute position embeddings (``pos_embed``), separate q/k/v projections (HF scales q after
``q_proj``; ``attn.q`` is before that scaling), and an MLP written inline in the decoder layer on flattened
(batch*pos) rows, which ``mlp_in`` / ``mlp.post`` / ``mlp_out`` view back as (batch, pos, ...).

Only pre-norm OPT is supported (every size except 350m, whose post-norms and embedding projections put
non-additive steps on the residual stream).
"""

from transformers import PretrainedConfig

from .base import Adapter, Site, separate_projection_sites


def _unsupported(config: PretrainedConfig) -> str | None:
    if not getattr(config, "do_layer_norm_before", True):
        return "post-norm OPT (do_layer_norm_before=False, e.g. opt-350m) has no additive residual stream"
    if getattr(config, "word_embed_proj_dim", None) not in (None, config.hidden_size):
        return "word_embed_proj_dim != hidden_size (projected embeddings, e.g. opt-350m) is not supported"
    if getattr(config, "_remove_final_layer_norm", False):
        return "_remove_final_layer_norm=True leaves the model without a final norm"
    return None


OPT = Adapter(
    name="opt",
    model_types=("opt",),
    layers="model.decoder.layers",
    embed="model.decoder.embed_tokens",
    pos_embed="model.decoder.embed_positions",
    final_norm="model.decoder.final_layer_norm",
    unembed="lm_head",
    block_sites={
        "attn_in": Site("self_attn", "input"),
        **separate_projection_sites("self_attn"),
        "attn.z": Site("self_attn.out_proj", "input", "heads"),
        "attn_out": Site("self_attn", "output"),
        "mlp_in": Site("fc1", "input", "flat"),
        "mlp.post": Site("fc2", "input", "flat"),
        "mlp_out": Site("fc2", "output", "flat"),
    },
    attention="self_attn",
    norm_kind="layernorm",
    unsupported=_unsupported,
)
