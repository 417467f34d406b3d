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
    import os
    from pathlib import Path

    from .model_files import check_model_source
    from .models import builtin
    from .models.loading import load_model as _load

    name = args[0] if args else kwargs.get("name_or_path")
    if hasattr(name, "config") and hasattr(name, "get_submodule"):  # an HF model already in memory
        return _load(*args, **kwargs)
    if name is None or (isinstance(name, str) and not name.strip()):
        raise ValueError(f"load_model needs a model: a built-in name ({', '.join(builtin.BUILTINS)}), a local model "
                         f"folder, a .gguf file or a hub id; got {name!r}")
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"load_model takes a model name or path (str or Path), or a Hugging Face model object with "
                        f"tokenizer=..., got {type(name).__name__}")
    if str(name) not in builtin.BUILTINS:
        check_model_source(Path(name).expanduser())
    return _load(*args, **kwargs)


__all__ = ["ActivationCache", "dictionaries", "Hook", "HookNameError", "HookReturnError", "HookedModel", "Tokens",
           "UnsupportedArchitectureError", "load_model", "supported_model_types"]
