"""The hook engine: attaches PyTorch hooks for a set of canonical hook points and removes them afterwards.

One torch hook is registered per (module, input/output) pair that carries requested points; it runs the points on
that module in computation order. A hook function ``fn(act, hook)`` sees the canonical tensor and returns None (no
change) or a tensor of the same shape, dtype and device that replaces it. Nothing is written back unless a
function returned a tensor, so observing hooks leave the computation bit-identical.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import Tensor, nn

from . import attention, layouts
from .hook_points import HookPoint

if TYPE_CHECKING:
    from .hooked import HookedModel


@dataclass(frozen=True)
class Hook:
    """What a hook function learns about where it runs."""

    name: str
    """Canonical hook point name, e.g. ``blocks.3.attn.z``."""
    layer: int | None
    """Block index, or None for embed / final_norm / logits."""
    kind: str
    """Hook kind without the layer, e.g. ``attn.z``."""


HookFn = Callable[[Tensor, Hook], "Tensor | None"]


class HookReturnError(ValueError):
    """A hook function returned something that cannot replace the activation."""


class StopForward(Exception):
    """Raised inside the forward pass to stop it once everything asked for has been computed."""


@dataclass
class _Entry:
    point: HookPoint
    layout: str
    fns: list[HookFn] = field(default_factory=list)

    @property
    def hook(self) -> Hook:
        return Hook(self.point.name, self.point.layer, self.point.kind)


def _validate(out: Any, act: Tensor, name: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise HookReturnError(
            f"hook on {name!r} returned {type(out).__name__}; return a tensor to replace the activation or None "
            "to leave it unchanged"
        )
    if out.shape != act.shape or out.dtype != act.dtype or out.device != act.device:
        raise HookReturnError(
            f"hook on {name!r} returned a tensor of shape {tuple(out.shape)}, {out.dtype} on {out.device}; the "
            f"activation is {tuple(act.shape)}, {act.dtype} on {act.device} and a replacement must match it"
        )
    return out


def _run_fns(entry: _Entry, act: Tensor) -> Tensor:
    hook = entry.hook
    new = act
    for fn in entry.fns:
        out = fn(new, hook)
        if out is not None:
            new = _validate(out, new, hook.name)
    return new


class HookSession:
    """Torch hooks for one set of ``(point, fn)`` pairs. Use as a context manager; hooks go away on exit."""

    def __init__(self, model: "HookedModel", pairs: list[tuple[HookPoint, HookFn]],
                 stop_after: HookPoint | None = None, stop_before_layer: int | None = None):
        self.model = model
        self.pairs = pairs
        self.stop_after = stop_after
        self.stop_before_layer = stop_before_layer
        self._handles: list[Any] = []
        self._runners: list[tuple[nn.Module, Callable]] = []
        self._resid_pre: dict[int, Tensor] = {}

    # -- building --------------------------------------------------------------------------------------------
    def _site(self, point: HookPoint) -> tuple[nn.Module, str, str]:
        """(module, "input"|"output", layout) where ``point`` is read."""
        m, kind = self.model, point.kind
        if point.layer is None:
            module = {"embed": m.embed_module, "pos_embed": m.pos_embed_module, "final_norm": m.final_norm_module,
                      "logits": m.hf}[kind]
            return module, "output", "plain"
        block = m.blocks[point.layer]
        if kind == "resid_pre":
            return block, "input", "plain"
        if kind == "resid_post":
            return block, "output", "plain"
        if kind == "resid_mid":  # derived from resid_pre + attn_out at the attn_out site
            kind = "attn_out"
        site = m.adapter.block_sites[kind]
        return block.get_submodule(site.path), site.io, site.layout

    def _layout(self, point: HookPoint) -> str:
        if point.kind in ("attn.pattern", "resid_mid"):
            return "plain"
        return self._site(point)[2]

    def __enter__(self) -> "HookSession":
        try:
            self._attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _attach(self) -> None:
        entries: dict[str, _Entry] = {}
        for point, fn in self.pairs:
            entries.setdefault(point.name, _Entry(point, self._layout(point))).fns.append(fn)
        if self.stop_after is not None:
            entries.setdefault(self.stop_after.name, _Entry(self.stop_after, self._layout(self.stop_after)))

        groups: dict[tuple[int, str], list[_Entry]] = defaultdict(list)
        modules: dict[int, nn.Module] = {}
        for entry in entries.values():
            if entry.point.kind == "attn.pattern":
                self._attach_pattern(entry)
                continue
            module, io, _ = self._site(entry.point)
            groups[(id(module), io)].append(entry)
            modules[id(module)] = module
        for (mid, io), group in groups.items():
            group.sort(key=lambda e: e.point.order)
            module = modules[mid]
            if io == "input":
                self._handles.append(module.register_forward_pre_hook(self._input_hook(group), with_kwargs=True))
            else:
                self._handles.append(module.register_forward_hook(self._output_hook(group)))
        for entry in entries.values():
            if entry.point.kind == "resid_mid":
                self._stash_resid_pre(entry.point.layer)
        if self.stop_before_layer is not None:
            target = (self.model.blocks[self.stop_before_layer] if self.stop_before_layer < self.model.cfg.n_layers
                      else self.model.final_norm_module)
            self._handles.append(target.register_forward_pre_hook(self._raise_stop))

    def _raise_stop(self, *_: object) -> None:
        raise StopForward

    def _stash_resid_pre(self, layer: int) -> None:
        def stash(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._resid_pre[layer] = args[0] if args else kwargs["hidden_states"]
        # Registered after this session's resid_pre hook (if any), so it sees the block input as replaced.
        self._handles.append(self.model.blocks[layer].register_forward_pre_hook(stash, with_kwargs=True))

    def _attach_pattern(self, entry: _Entry) -> None:
        module = self.model.blocks[entry.point.layer].get_submodule(self.model.adapter.attention)
        stop = self.stop_after is not None and self.stop_after.name == entry.point.name

        def runner(weights: Tensor) -> Tensor | None:
            new = _run_fns(entry, weights)
            if stop:
                raise StopForward
            return None if new is weights else new

        runners = getattr(module, attention.RUNNER_ATTR, None)
        if runners is None:
            runners = []
            setattr(module, attention.RUNNER_ATTR, runners)
        runners.append(runner)
        self._runners.append((module, runner))
        self.model._eager_users += 1
        self.model._sync_attn_implementation()

    # -- running ---------------------------------------------------------------------------------------------
    def _process(self, group: list[_Entry], raw: Tensor) -> tuple[Tensor, bool]:
        cfg = self.model.cfg
        changed = False
        for entry in group:
            kind = entry.point.kind
            if kind == "resid_mid":
                resid_pre = self._resid_pre.pop(entry.point.layer)
                mid = resid_pre + raw  # the same addition HF performs next, so the same bits
                new = _run_fns(entry, mid)
                if new is not mid and not torch.equal(new, mid):
                    raw, changed = new - resid_pre, True
            else:
                act = layouts.read(raw, entry.layout, kind, cfg.n_heads, cfg.n_kv_heads, cfg.d_head)
                new = _run_fns(entry, act)
                if new is not act:
                    raw = layouts.write(raw, new, entry.layout, kind, cfg.n_heads, cfg.n_kv_heads, cfg.d_head)
                    changed = True
            if self.stop_after is not None and entry.point.name == self.stop_after.name:
                raise StopForward
        return raw, changed

    def _input_hook(self, group: list[_Entry]) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            raw = args[0] if args else kwargs["hidden_states"]
            new, changed = self._process(group, raw)
            if not changed:
                return None
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}
        return hook

    def _output_hook(self, group: list[_Entry]) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any):
            if isinstance(output, Tensor):
                new, changed = self._process(group, output)
                return new if changed else None
            if isinstance(output, tuple):
                new, changed = self._process(group, output[0])
                return (new, *output[1:]) if changed else None
            new, changed = self._process(group, output.logits)  # ModelOutput of the root model
            if changed:
                output.logits = new
            return output
        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, runner in self._runners:
            runners = getattr(module, attention.RUNNER_ATTR, [])
            if runner in runners:
                runners.remove(runner)
            if not runners and hasattr(module, attention.RUNNER_ATTR):
                delattr(module, attention.RUNNER_ATTR)
            self.model._eager_users -= 1
        if self._runners:
            self.model._sync_attn_implementation()
        self._runners.clear()
        self._resid_pre.clear()


@contextlib.contextmanager
def catch_stop() -> Iterator[list[bool]]:
    """Swallow :class:`StopForward`; the yielded list holds True afterwards if the pass was stopped."""
    stopped = [False]
    try:
        yield stopped
    except StopForward:
        stopped[0] = True
