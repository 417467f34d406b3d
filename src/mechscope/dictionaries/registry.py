"""A tiny registry: architecture name -> dictionary class, and ``create`` for building one from keywords."""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Any, TypeVar

from .base import Dictionary, DictionaryConfig
from .errors import DictionaryConfigError, UnknownArchitectureError

_CLASSES: dict[str, type[Dictionary]] = {}
T = TypeVar("T", bound=type[Dictionary])

#: Names accepted by :func:`create`: registered classes plus the transcoder forms.
TRANSCODER_NAMES = ("transcoder", "skip_transcoder")
TRANSCODER_ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")


def register(cls: T) -> T:
    """Class decorator adding ``cls`` under ``cls.architecture``."""
    if not cls.architecture:
        raise TypeError(f"{cls.__name__} has no architecture name")
    _CLASSES[cls.architecture] = cls
    return cls


def _load_builtins() -> None:
    from . import clt, crosscoder, gated, jumprelu, relu, topk  # noqa: F401  (registration side effect)


def names() -> list[str]:
    """Every name :func:`create` accepts."""
    _load_builtins()
    return sorted(set(_CLASSES) | set(TRANSCODER_NAMES))


def get_class(name: str) -> type[Dictionary]:
    """The class registered as ``name``; :class:`UnknownArchitectureError` lists the valid names otherwise."""
    _load_builtins()
    if name in _CLASSES:
        return _CLASSES[name]
    close = difflib.get_close_matches(str(name), names(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownArchitectureError(
        f"unknown dictionary architecture {name!r}.{hint} Valid architectures: {', '.join(names())}"
    )


def create(arch: str, *, d_in: int, d_sae: int, **kwargs: Any) -> Dictionary:
    """Build a freshly initialised dictionary.

    ``arch`` is one of :func:`names`. Keywords are :class:`DictionaryConfig` fields (``hook_name``, ``model_name``,
    ``d_out``, ``dtype`` ...) or the architecture's options (``k`` for TopK, ``bandwidth`` for JumpReLU,
    ``n_layers`` for crosscoders ...). Transcoders take ``activation=`` one of relu, topk, batchtopk, jumprelu.
    """
    if arch in TRANSCODER_NAMES:
        activation = kwargs.pop("activation", "relu")
        if activation not in TRANSCODER_ACTIVATIONS:
            raise DictionaryConfigError(
                f"transcoder activation {activation!r} is not one of {', '.join(TRANSCODER_ACTIVATIONS)}"
            )
        cls = get_class(activation)
        kwargs.update(transcoder=True, apply_b_dec_to_input=False)
        kwargs.setdefault("skip_connection", arch == "skip_transcoder")
    else:
        cls = get_class(arch)
    for key, value in cls.config_defaults.items():
        kwargs.setdefault(key, value)
    cfg_names = {f.name for f in fields(DictionaryConfig)} - {"d_in", "d_sae"}
    opt_names = {f.name for f in fields(cls.Options)}
    unknown = sorted(set(kwargs) - cfg_names - opt_names)
    if unknown:
        raise DictionaryConfigError(
            f"unknown option(s) {', '.join(unknown)} for {arch!r}; config fields: {', '.join(sorted(cfg_names))}; "
            f"{arch} options: {', '.join(sorted(opt_names)) or '(none)'}"
        )
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, **{k: v for k, v in kwargs.items() if k in cfg_names})
    options = cls.Options(**{k: v for k, v in kwargs.items() if k in opt_names})
    return cls(cfg, options)
