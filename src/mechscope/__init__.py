"""mechscope: a workbench for mechanistic interpretability of Hugging Face causal language models."""

from . import dictionaries
from .activations import ActivationCache
from .models import (
    Hook,
    HookedModel,
    HookNameError,
    HookReturnError,
    Tokens,
    UnsupportedArchitectureError,
    supported_model_types,
)

__version__ = "0.1.0"


def load_model(*args, **kwargs) -> HookedModel:
    """Load a model by built-in name, hub id, local directory or ``.gguf`` file, or wrap an HF model object given
    with ``tokenizer=`` (see ``mechscope.models.loading``).

    A missing or empty name is refused at once, and a local ``.gguf`` file or model folder has its headers checked
    first (:mod:`mechscope.model_files`), so a damaged file is named instead of failing inside a reader.
    """
    from .models.loading import load_model as _load

    return _load(*args, **kwargs)


__all__ = ["ActivationCache", "dictionaries", "Hook", "HookNameError", "HookReturnError", "HookedModel", "Tokens",
           "UnsupportedArchitectureError", "load_model", "supported_model_types"]
