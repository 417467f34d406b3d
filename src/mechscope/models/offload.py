"""Models spread over several devices or offloaded to CPU / disk by accelerate (``device_map=...``).

accelerate keeps an offloaded module's parameters on the ``meta`` device and loads them from a weights map around
each forward call. Hooks need nothing special (they see the tensors HF computes), but reading weights outside a
forward (``W_O``, ``W_U``, norms) must go through that weights map: :func:`materialise` does.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor, nn

_NAMED_DEVICES = ("cpu", "disk", "meta")
_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


class DeviceMapError(ValueError):
    """A device map or memory budget that names a device this machine does not have."""


def _available() -> list[str]:
    names = ["cpu", "disk"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(device: Any, what: str = "device") -> None:
    """Raise :class:`DeviceMapError` unless ``device`` exists on this machine (``"disk"`` allowed for maps)."""
    if isinstance(device, str) and device in ("cpu", "disk"):
        return
    try:
        dev = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    except (RuntimeError, TypeError) as e:
        raise DeviceMapError(f"{what} {device!r} is not a device name; available here: "
                             f"{', '.join(_available())}") from e
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index < count:
            return
        raise DeviceMapError(f"{what} {device!r} names CUDA device {index}, but this machine has {count} CUDA "
                             f"device(s); available here: {', '.join(_available())}")
    if dev.type == "mps" and "mps" in _available():
        return
    raise DeviceMapError(f"{what} {device!r} is not available on this machine; available here: "
                         f"{', '.join(_available())}")


def check_device_map(device_map: Any, max_memory: dict | None) -> None:
    """Validate a ``device_map`` (a strategy name or ``{module path: device}``) and a ``max_memory`` budget."""
    if isinstance(device_map, str):
        if device_map not in _MAP_STRATEGIES:
            check_device(device_map, "device_map")
    elif isinstance(device_map, dict):
        for path, device in device_map.items():
            check_device(device, f"device_map[{path!r}]")
    elif device_map is not None:
        raise DeviceMapError(f"device_map must be one of {', '.join(_MAP_STRATEGIES)}, a device, or a dict of "
                             f"module path -> device; got {type(device_map).__name__}")
    for device in (max_memory or {}):
        check_device(device, "max_memory key")


def is_dispatched(hf: nn.Module) -> bool:
    """Whether accelerate placed or offloads parts of the model (then ``.to()`` must not move it)."""
    return any(hasattr(m, "_hf_hook") for m in hf.modules())


def input_device(hf: nn.Module, embed_path: str) -> torch.device:
    """Where input ids go: the execution device of the embedding (CPU when it is offloaded)."""
    device_map = getattr(hf, "hf_device_map", None)
    if device_map:
        best = max((p for p in device_map if p == "" or embed_path == p or embed_path.startswith(p + ".")),
                   key=len, default=None)
        if best is not None:
            d = device_map[best]
            return torch.device("cpu" if d in _NAMED_DEVICES else (f"cuda:{d}" if isinstance(d, int) else d))
    for p in hf.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


_NAME_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[int, str]] = weakref.WeakKeyDictionary()


def _names(root: nn.Module) -> dict[int, str]:
    if root not in _NAME_CACHE:
        _NAME_CACHE[root] = {id(m): n for n, m in root.named_modules()}
    return _NAME_CACHE[root]


def materialise(root: nn.Module, module: nn.Module, name: str) -> Tensor | None:
    """``module.<name>`` as a real tensor, fetched from accelerate's weights map if the module is offloaded."""
    t = getattr(module, name, None)
    if t is None or t.device.type != "meta":
        return t
    path = _names(root).get(id(module))
    if path is None:
        raise RuntimeError(f"{type(module).__name__}.{name} is on the meta device and not part of this model")
    parts = path.split(".") if path else []
    for i in range(len(parts), -1, -1):
        owner = root.get_submodule(".".join(parts[:i]))
        hook = getattr(owner, "_hf_hook", None)
        for h in getattr(hook, "hooks", (hook,)):
            weights = getattr(h, "weights_map", None)
            key = ".".join([*parts[i:], name])
            if weights is None:
                continue
            try:
                value = weights[key]
            except KeyError:
                continue
            device = getattr(h, "execution_device", None)
            return value.to(device) if device is not None else value
    raise RuntimeError(f"{path}.{name} is on the meta device and no accelerate weights map holds it")
