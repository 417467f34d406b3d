"""The shapes and conventions of a hooked model, read from the HF config and module structure."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelConfig:
    name: str
    """What the model was loaded from (built-in name, hub id or path)."""
    family: str
    """Adapter family, e.g. ``llama``."""
    model_type: str
    """HF ``config.model_type``."""
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    """Key/value heads (fewer than ``n_heads`` under grouped-query attention)."""
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    """Longest input the model accepts (``max_position_embeddings``)."""
    dtype: torch.dtype
    device: torch.device
    parallel_residual: bool
    default_prepend_bos: bool
    """Whether the model's own tokenizer puts a BOS token in front of text by itself."""


def _first(config: object, *names: str, default: object = None) -> object:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def read_config(hf_config: object, *, name: str, family: str, n_layers: int, d_vocab: int, dtype: torch.dtype,
                device: torch.device, parallel_residual: bool, default_prepend_bos: bool) -> ModelConfig:
    d_model = int(_first(hf_config, "hidden_size", "n_embd", "d_model"))
    n_heads = int(_first(hf_config, "num_attention_heads", "n_head"))
    n_kv = int(_first(hf_config, "num_key_value_heads", default=n_heads))
    d_head = int(_first(hf_config, "head_dim", default=d_model // n_heads))
    d_mlp = int(_first(hf_config, "intermediate_size", "n_inner", default=4 * d_model))
    n_ctx = int(_first(hf_config, "max_position_embeddings", "n_positions", "n_ctx", default=2048))
    return ModelConfig(name=name, family=family, model_type=hf_config.model_type, n_layers=n_layers,
                       d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv, d_head=d_head, d_mlp=d_mlp,
                       d_vocab=d_vocab, n_ctx=n_ctx, dtype=dtype, device=device,
                       parallel_residual=parallel_residual, default_prepend_bos=default_prepend_bos)
