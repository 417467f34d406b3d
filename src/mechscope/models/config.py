"""The shapes and conventions of a hooked model, read from the HF config and module structure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PretrainedConfig


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
    n_experts: int = 0
    """Experts per mixture-of-experts block (0 for a dense model)."""
    experts_per_token: int = 0
    """Experts each token is routed to (top-k)."""


def _first(config: PretrainedConfig, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def read_config(hf_config: PretrainedConfig, *, name: str, family: str, n_layers: int, d_vocab: int, dtype: torch.dtype,
                device: torch.device, parallel_residual: bool, default_prepend_bos: bool,
                n_kv_heads: int | None = None) -> ModelConfig:
    d_model = int(_first(hf_config, "hidden_size", "n_embd", "d_model"))
    n_heads = int(_first(hf_config, "num_attention_heads", "n_head"))
    n_kv = n_kv_heads or int(_first(hf_config, "num_key_value_heads", default=n_heads))
    d_head = int(_first(hf_config, "head_dim", default=d_model // n_heads))
    d_mlp = int(_first(hf_config, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", default=4 * d_model))
    n_ctx = int(_first(hf_config, "max_position_embeddings", "n_positions", "n_ctx", "seq_length", default=2048))
    n_experts = int(_first(hf_config, "num_local_experts", "num_experts", default=0) or 0)
    top_k = int(_first(hf_config, "num_experts_per_tok", default=0) or 0) if n_experts else 0
    return ModelConfig(name=name, family=family, model_type=hf_config.model_type, n_layers=n_layers,
                       d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv, d_head=d_head, d_mlp=d_mlp,
                       d_vocab=d_vocab, n_ctx=n_ctx, dtype=dtype, device=device,
                       parallel_residual=parallel_residual, default_prepend_bos=default_prepend_bos,
                       n_experts=n_experts, experts_per_token=top_k)


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A floating dtype the models run in, from a ``torch.dtype`` or a name (``"bf16"``, ``"float16"``, ...)."""
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} (or a torch.dtype)")
        return DTYPES[key]
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"dtype {dtype} is not one models run in; use torch.float32, torch.bfloat16 or "
                             "torch.float16")
        return dtype
    raise TypeError(f"dtype must be a torch.dtype or one of {', '.join(DTYPES)}, got {type(dtype).__name__}")
