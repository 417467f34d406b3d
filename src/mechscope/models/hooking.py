"""The hook engine: attaches PyTorch hooks for a set of canonical hook points and removes them afterwards.

One torch hook is registered per (module, input/output) pair that carries requested points; it runs the points on
that module in computation order. A hook function ``fn(act, hook)`` sees the canonical tensor and returns None (no
change) or a tensor of the same shape, dtype and device that replaces it. A function that edits ``act`` in place
and returns None counts as returning the edited tensor, at every hook point (edits are detected through the
tensor's version counter). Nothing is written back unless a function changed the activation, so observing hooks
leave the computation bit-identical.

Sites inside a module's own code (attention probabilities formed inline, router logits) are reached with a
``TorchFunctionMode`` active only during that module's forward: it hands the first result of the named
``torch.nn.functional`` call to the hooks and returns their replacement to HF's code.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from . import attention, layouts
from .adapters.base import Site
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
    site: Site
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


def _version(t: Tensor) -> int | None:
    try:
        return t._version
    except RuntimeError:  # inference-mode tensors keep no version counter
        return None


OBSERVER_ATTR = "_mechscope_observer"
"""Set on a hook function that never edits its argument (run_with_cache's recorder): it gets no defensive copy."""


def _observing(entry: _Entry) -> bool:
    return all(getattr(fn, OBSERVER_ATTR, False) for fn in entry.fns)


def _run_fns(entry: _Entry, act: Tensor) -> tuple[Tensor, bool]:
    """Run the entry's functions in order; returns the final tensor and whether any function changed it.

    A function that edits its argument in place and returns None counts as returning the edited tensor.
    """
    hook = entry.hook
    new, edited = act, False
    for fn in entry.fns:
        before = _version(new)
        out = fn(new, hook)
        if out is not None:
            new, edited = _validate(out, new, hook.name), True
        elif before is not None and _version(new) != before:
            edited = True
    return new, edited


_WHOLE_OUTPUT = ("router_dense",)  # layouts that read a module's whole tuple output, not its first element
_BATCH_LAYOUTS = ("flat", "router_dense", "experts")
_WRITE_NEEDS_OLD = ("router_dense", "experts")


class _CallSite(TorchFunctionMode):
    """While active, hands the first result of ``func`` to ``handler`` and returns what the handler gives back."""

    def __init__(self, func: Callable, handler: Callable[[Tensor], Tensor]):
        super().__init__()
        self.func, self.handler, self.done = func, handler, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is self.func and not self.done:
            self.done = True
            out = self.handler(out)
        return out


class HookSession:
    """Torch hooks for one set of ``(point, fn)`` pairs. Use as a context manager; hooks go away on exit."""

    def __init__(self, model: HookedModel, pairs: list[tuple[HookPoint, HookFn]],
                 stop_after: HookPoint | None = None, stop_before_layer: int | None = None):
        self.model = model
        self.pairs = pairs
        self.stop_after = stop_after
        self.stop_before_layer = stop_before_layer
        self._handles: list[Any] = []
        self._runners: list[tuple[nn.Module, Callable]] = []
        self._resid_pre: dict[int, Tensor] = {}
        self._batch_shape: tuple[int, int] | None = None
        self._eager_holds = 0

    # -- building --------------------------------------------------------------------------------------------
    def _site(self, point: HookPoint) -> tuple[nn.Module, Site]:
        """The module and site where ``point`` is read."""
        m, kind = self.model, point.kind
        if point.layer is None:
            if kind == "logits":
                return m.hf, Site("", "output")
            site = {"embed": m.adapter.embed_site(), "pos_embed": Site(m.adapter.pos_embed or "", "output"),
                    "final_norm": Site(m.adapter.final_norm, "output")}[kind]
            return m.hf.get_submodule(site.path), site
        block = m.blocks[point.layer]
        if kind == "resid_pre":
            return block, Site("", "input")
        if kind == "resid_post":
            return block, Site("", "output")
        if kind == "resid_mid":  # derived from resid_pre + attn_out at the attn_out site
            kind = "attn_out"
        site = m.layer_sites[point.layer][kind]
        return block.get_submodule(site.path), site

    def __enter__(self) -> HookSession:
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
        wanted = list(self.pairs)
        if self.stop_after is not None:
            wanted.append((self.stop_after, None))
        for point, fn in wanted:
            if point.name not in entries:
                site = Site("", "output") if self._registry_pattern(point) else self._site(point)[1]
                entries[point.name] = _Entry(point, site)
            if fn is not None:
                entries[point.name].fns.append(fn)

        groups: dict[tuple[int, str, str | None, bool], list[_Entry]] = defaultdict(list)
        modules: dict[int, nn.Module] = {}
        for entry in entries.values():
            if self._registry_pattern(entry.point):
                self._attach_pattern(entry)
                continue
            module, site = self._site(entry.point)
            groups[(id(module), site.io, site.call, site.layout in _WHOLE_OUTPUT)].append(entry)
            modules[id(module)] = module
        # Flat layouts view (batch*pos) rows as (batch, pos) with the shape of their own block's input: a caller may
        # change the batch inside the model (patching's shared prefix fans the residual out at a block).
        for layer in sorted({e.point.layer for e in entries.values() if e.site.layout in _BATCH_LAYOUTS
                             and e.point.layer is not None}):
            self._handles.append(self.model.blocks[layer].register_forward_pre_hook(self._record_batch_shape,
                                                                                    with_kwargs=True))
        for (mid, io, call, whole), group in groups.items():
            group.sort(key=lambda e: e.point.order)
            module = modules[mid]
            if io == "input":
                self._handles.append(module.register_forward_pre_hook(self._input_hook(group), with_kwargs=True))
            elif io == "call":
                self._attach_call(module, call, group)
            else:
                self._handles.append(module.register_forward_hook(self._output_hook(group, whole), with_kwargs=True))
        for entry in entries.values():
            if entry.point.kind == "resid_mid":
                self._stash_resid_pre(entry.point.layer)
        if self.stop_before_layer is not None:
            target = (self.model.blocks[self.stop_before_layer] if self.stop_before_layer < self.model.cfg.n_layers
                      else self.model.final_norm_module)
            self._handles.append(target.register_forward_pre_hook(self._raise_stop))

    def _registry_pattern(self, point: HookPoint) -> bool:
        return point.kind == "attn.pattern" and self.model.adapter.registry_pattern

    def _raise_stop(self, *_: object) -> None:
        raise StopForward

    def _record_batch_shape(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["hidden_states"]  # the block's input residual (B, T, D)
        self._batch_shape = (int(x.shape[0]), int(x.shape[1]))

    def _stash_resid_pre(self, layer: int) -> None:
        def stash(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._resid_pre[layer] = args[0] if args else kwargs["hidden_states"]
        # Registered after this session's resid_pre hook (if any), so it sees the block input as replaced.
        self._handles.append(self.model.blocks[layer].register_forward_pre_hook(stash, with_kwargs=True))

    def _attach_pattern(self, entry: _Entry) -> None:
        module = self.model.blocks[entry.point.layer].get_submodule(self.model.adapter.attention)
        stop = self.stop_after is not None and self.stop_after.name == entry.point.name

        def runner(weights: Tensor) -> Tensor | None:
            new, edited = _run_fns(entry, weights)
            if stop:
                raise StopForward
            return new if edited else None

        self._add_runner(module, runner)

    def _add_runner(self, module: nn.Module, runner: Callable) -> None:
        runners = getattr(module, attention.RUNNER_ATTR, None)
        if runners is None:
            runners = []
            setattr(module, attention.RUNNER_ATTR, runners)
        runners.append(runner)
        self._runners.append((module, runner))
        self._hold_eager()

    def _hold_eager(self) -> None:
        """Run the model's eager attention while this session lives (probabilities exist only there)."""
        self._eager_holds += 1
        self.model._eager_users += 1
        self.model._sync_attn_implementation()

    def _attach_call(self, module: nn.Module, call: str | None, group: list[_Entry]) -> None:
        """Catch the first ``torch.nn.functional.<call>`` result inside ``module``'s forward."""
        func = getattr(torch.nn.functional, call or "")
        modes: list[_CallSite] = []

        def handler(raw: Tensor) -> Tensor:
            new, changed = self._process(group, raw, module, ())
            return new if changed else raw

        def enter(*_: object) -> None:
            mode = _CallSite(func, handler)
            mode.__enter__()
            modes.append(mode)

        def leave(*_: object) -> None:
            if modes:
                modes.pop().__exit__(None, None, None)

        self._handles.append(module.register_forward_pre_hook(enter))
        self._handles.append(module.register_forward_hook(leave, prepend=True, always_call=True))
        if any(e.point.kind == "attn.pattern" for e in group):
            self._hold_eager()

    # -- running ---------------------------------------------------------------------------------------------
    def _ctx(self, module: nn.Module, args: tuple) -> layouts.Ctx:
        cfg = self.model.cfg
        return layouts.Ctx(cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.n_experts, self._batch_shape, module, args)

    def _scale(self, site: Site) -> float | None:
        return None if site.scale is None else float(getattr(self.model.hf.config, site.scale))

    def _process(self, group: list[_Entry], raw: Any, module: nn.Module, args: tuple) -> tuple[Any, bool]:
        ctx = self._ctx(module, args)
        changed = False
        for entry in group:
            kind, site = entry.point.kind, entry.site
            scale = self._scale(site)
            if kind == "resid_mid":
                resid_pre = self._resid_pre.pop(entry.point.layer).to(raw.device)
                out = raw if scale is None else raw * scale
                mid = resid_pre + out  # the same addition HF performs next, so the same bits
                new, edited = _run_fns(entry, mid)
                if edited:
                    delta = new - resid_pre
                    raw, changed = (delta if scale is None else delta / scale), True
            else:
                read = layouts.read(raw, site.layout, kind, ctx)
                act = read if scale is None else read * scale  # the same product HF computes, so the same bits
                if site.io == "input" and not _observing(entry):
                    # HF may pass a module's input on elsewhere too (the shared normalised input of a parallel
                    # block, OLMo-2's raw residual): an in-place edit must reach this module only.
                    act = act.clone()
                old = act.clone() if site.layout in _WRITE_NEEDS_OLD else None  # fns may edit act in place
                new, edited = _run_fns(entry, act)
                if edited:
                    if scale is not None:
                        new = new / scale
                    raw, changed = layouts.write(raw, new, site.layout, kind, ctx, old), True
            if self.stop_after is not None and entry.point.name == self.stop_after.name:
                raise StopForward
        if any(e.site.copy for e in group):  # HF edits this tensor in place later: it continues from a copy
            raw, changed = raw.clone(), True
        return raw, changed

    def _input_hook(self, group: list[_Entry]) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            raw = args[0] if args else kwargs["hidden_states"]
            new, changed = self._process(group, raw, module, args)
            if not changed:
                return None
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}
        return hook

    def _output_hook(self, group: list[_Entry], whole: bool) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any):
            if not args and kwargs:
                args = tuple(kwargs.values())
            if whole or isinstance(output, Tensor):
                new, changed = self._process(group, output, module, args)
                return new if changed else None
            if isinstance(output, tuple):
                new, changed = self._process(group, output[0], module, args)
                return (new, *output[1:]) if changed else None
            new, changed = self._process(group, output.logits, module, args)  # ModelOutput of the root model
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
        if self._eager_holds:
            self.model._eager_users -= self._eager_holds
            self._eager_holds = 0
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
