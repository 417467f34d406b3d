"""Adapter registry: one declarative file per architecture family."""

from __future__ import annotations

from .base import Adapter, Site
from .gemma import GEMMA2, GEMMA3
from .gpt2 import GPT2
from .llama import LLAMA, QWEN3
from .neox import NEOX

ADAPTERS: tuple[Adapter, ...] = (LLAMA, QWEN3, GEMMA2, GEMMA3, GPT2, NEOX)


class UnsupportedArchitectureError(ValueError):
    """The HF model's ``model_type`` has no adapter."""


def supported_model_types() -> list[str]:
    return sorted(t for a in ADAPTERS for t in a.model_types)


def adapter_for(model_type: str) -> Adapter:
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedArchitectureError(
        f"no mechscope adapter for model_type {model_type!r}; supported model types: "
        f"{', '.join(supported_model_types())}. Adding a family takes one file in "
        "src/mechscope/models/adapters/ (see the README, 'Adding an architecture')."
    )


__all__ = ["ADAPTERS", "Adapter", "Site", "UnsupportedArchitectureError", "adapter_for", "supported_model_types"]
