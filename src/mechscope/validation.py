"""Argument checks shared by configs, the CLI and the API: non-finite numbers are refused where they are given.

A NaN or infinite learning rate, strength or threshold never trains, steers or monitors anything useful, and it
fails late (at save time, or as an empty result). These helpers turn it into an immediate error that names the
argument:

    check_finite_fields(self)            # in a config dataclass's __post_init__: every float field, recursively
    check_finite(strength, "strength")   # one API argument
    parser.add_argument("--lr", type=finite_float)   # the CLI refuses "nan" / "inf" while parsing

This module imports nothing from mechscope, so every package may use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any


def _bad(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def check_finite(value: Any, name: str) -> Any:
    """``value`` unchanged, or ``ValueError`` naming ``name`` when it is a NaN or infinite number.

    Tensors are checked element-wise; ints, bools, None and other types pass (their own checks apply).
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        if _bad(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return value
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return value
    if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must hold finite numbers only; it has "
                         f"{int(value.isnan().sum())} NaN and {int(value.isinf().sum())} inf values")
    return value


def _walk(value: Any, where: str) -> None:
    if _bad(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(v, f"{where}[{i}]")


def check_finite_fields(obj: Any, name: str | None = None) -> None:
    """``ValueError`` naming the field (``OptimConfig.lr``) when any float in dataclass ``obj`` is NaN or infinite.

    Nested dataclasses, dicts, lists and tuples are walked too.
    """
    _walk(obj, name or type(obj).__name__)


def finite_float(text: str) -> float:
    """An ``argparse`` type: a float that is neither NaN nor infinite (``--lr inf`` is refused while parsing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
