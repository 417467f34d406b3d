"""Adapter registry: one declarative file per architecture family."""

from __future__ import annotations

from transformers import PretrainedConfig

from .base import Adapter, Site
from .bloom import BLOOM
from .cohere import COHERE
from .falcon import FALCON
from .gemma import GEMMA, GEMMA2, GEMMA3
from .gpt2 import GPT2
from .gpt_neo import GPT_NEO
from .gptj import GPTJ
from .granite import GRANITE
from .llama import LLAMA, QWEN3, SMOLLM3
from .moe import MIXTRAL, OLMOE, QWEN2_MOE, QWEN3_MOE
from .neox import NEOX
from .olmo import OLMO, OLMO2
from .opt import OPT
from .phi import PHI, PHI3
from .stablelm import STABLELM

ADAPTERS: tuple[Adapter, ...] = (LLAMA, QWEN3, SMOLLM3, GEMMA, GEMMA2, GEMMA3, GPT2, NEOX, OLMO, OLMO2, PHI, PHI3,
                                 STABLELM, GPTJ, GPT_NEO, FALCON, GRANITE, COHERE, BLOOM, OPT, MIXTRAL, QWEN2_MOE,
                                 QWEN3_MOE, OLMOE)


class UnsupportedArchitectureError(ValueError):
    """The HF model's ``model_type`` has no adapter, or its config is a variant the adapter does not cover."""


def supported_model_types() -> list[str]:
    return sorted(t for a in ADAPTERS for t in a.model_types)


def adapter_for(model_type: str, config: PretrainedConfig | None = None) -> Adapter:
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            problem = adapter.unsupported(config) if config is not None else None
            if problem:
                raise UnsupportedArchitectureError(f"{adapter.name}: {problem}")
            return adapter
    raise UnsupportedArchitectureError(
        f"no mechscope adapter for model_type {model_type!r}; supported model types: "
        f"{', '.join(supported_model_types())}. Adding a family takes one file in "
        "src/mechscope/models/adapters/ (see the README, 'Adding an architecture')."
    )


__all__ = ["ADAPTERS", "Adapter", "Site", "UnsupportedArchitectureError", "adapter_for", "supported_model_types"]
