"""Attribution patching: the first-order estimate of every patching cell from 2 forward and 1 backward pass.

For a cell with activation ``a`` the effect of patching is estimated as

    metric(base with a := a_source) - metric(base)  ≈  (a_source - a_base) · ∂metric/∂a |_base

The gradient at every requested hook point comes from one backward pass: each point's activation gets a zero
tensor added that requires grad (so the gradient exists even where the canonical tensor is a reshaped view of
what the model uses), and ``torch.autograd.grad`` reads them all at once.

    >>> attr = attribution_patch(model, clean, corrupted, metric)          # every block point, all layers
    >>> attr.sweep("resid_pre")                                            # PatchResult layers × positions
    >>> check = attribution_check(model, clean, corrupted, metric)         # correlation with real patching
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..metrics import Metric, as_metric
from ..models.hooked import HookedModel
from ..models.tokens import Inputs
from .patching import HEAD_KINDS, Direction, patch_sweep, position_labels, prepare
from .results import PatchResult, correlation

DEFAULT_KINDS = ("resid_pre", "attn.q", "attn.k", "attn.v", "attn.pattern", "attn.z", "attn_out", "resid_mid",
                 "mlp.post", "mlp_out", "resid_post")


@dataclass
class AttributionResult:
    """Per hook point estimates, averaged over prompts.

    ``scores[name]`` is ``(pos,)`` for residual-like points (summed over the feature axis), ``(pos, heads)`` for
    q / k / v / z and ``(query_pos, heads)`` for the pattern. ``metric_base`` is the metric of the base run.
    """

    scores: dict[str, Tensor]
    metric_name: str
    metric_base: float
    position_labels: list[str]
    n_layers: int

    def sweep(self, kind: str = "resid_pre", axis: Literal["pos", "head"] = "pos",
              layers: Sequence[int] | None = None, pos: int | None = None) -> PatchResult:
        """Estimated metric changes as a layers × positions (or layers × heads) :class:`PatchResult`."""
        layers = list(range(self.n_layers)) if layers is None else list(layers)
        rows = []
        for layer in layers:
            name = f"blocks.{layer}.{kind}"
            if name not in self.scores:
                shown = ", ".join(list(self.scores)[:6])
                raise KeyError(f"{name!r} was not attributed; attributed points: {shown} ...")
            s = self.scores[name]
            if axis == "pos":
                rows.append(s if s.ndim == 1 else s.sum(-1))
            else:
                if s.ndim != 2:
                    raise ValueError(f"axis='head' needs a per-head kind, {kind!r} has no head axis")
                rows.append(s.sum(0) if pos is None else s[pos])
        values = torch.stack(rows)
        cols = (self.position_labels if axis == "pos" else [f"H{h}" for h in range(values.shape[1])])
        return PatchResult(values, [f"L{layer}" for layer in layers], cols, f"Δ{self.metric_name} (attribution)",
                           title=f"attribution patching {kind}")

    def view(self):
        """Interactive view (:mod:`mechscope.display`): one layers × positions heatmap per kind of hook point
        (per-head kinds summed over heads; hover a cell for the estimate), and the largest estimates."""
        from .. import display

        title = f"attribution patching: Δ{self.metric_name} estimates"
        if not self.scores:
            return display.empty(title, "no hook point was attributed")
        by_kind: dict[str, list[int]] = {}
        other = []
        for name in self.scores:
            parts = name.split(".", 2)
            if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
                by_kind.setdefault(parts[2], []).append(int(parts[1]))
            else:
                other.append(name)
        children = []
        for kind, layers in by_kind.items():
            res = self.sweep(kind, layers=sorted(layers))
            children.append(display.heatmap(res.values, res.row_labels, res.col_labels, title=kind,
                                            value_name=f"Δ{self.metric_name}"))
        totals = sorted(((float(v.sum()), n) for n, v in self.scores.items()), key=lambda t: -abs(t[0]))
        if other:
            children.append(display.bar_chart(other, [float(self.scores[n].sum()) for n in other],
                                              value_name=f"Δ{self.metric_name}", title="other hook points"))
        summary = [(f"{self.metric_name} of the base run", self.metric_base), ("hook points", len(self.scores))]
        summary += [(f"Σ at {n}", v) for v, n in totals[:3]]
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def _per_cell(kind: str, diff_grad: Tensor) -> Tensor:
    """Sum ``(source - base) * grad`` over everything but the cell axes; mean over prompts."""
    if kind in HEAD_KINDS:
        return diff_grad.sum(-1).sum(0)  # (B, T, H, Dh) -> (T, H)
    if kind == "attn.pattern":
        return diff_grad.sum(-1).sum(0).T  # (B, H, Q, K) -> (Q, H)
    return diff_grad.flatten(2).sum(-1).sum(0)  # (B, T, ...) -> (T,)


def attribution_patch(model: HookedModel, clean: Inputs | Mapping[str, Tensor], corrupted: Inputs,
                      metric: Callable[[Tensor], Tensor] | Metric, *, names: Sequence[str] | None = None,
                      direction: Direction = "denoise") -> AttributionResult:
    """Attribution-patching estimates for every hook point in ``names`` (default: every block point).

    One forward pass caches the source activations; one forward and one backward pass on the base input give
    every gradient. Estimates are for the metric averaged over prompts.
    """
    metric = as_metric(metric)
    if names is None:
        names = [n for n in model.hook_names() if model.resolve(n).kind in DEFAULT_KINDS]
    points = sorted({model.resolve(n) for n in names})
    names = [p.name for p in points]
    run = prepare(model, clean, corrupted, names, None, direction)
    # resid_mid is the sum resid_pre + attn_out and attn_out feeds nothing else, so the two share one gradient.
    grad_name = {p.name: (f"blocks.{p.layer}.attn_out" if p.kind == "resid_mid" else p.name) for p in points}
    deltas: dict[str, Tensor] = {}
    base_acts: dict[str, Tensor] = {}

    def add_delta(act: Tensor, hook) -> Tensor:
        base_acts[hook.name] = act.detach()
        d = torch.zeros_like(act, requires_grad=True)
        deltas[hook.name] = d
        return act + d

    def observe(act: Tensor, hook) -> None:
        base_acts[hook.name] = act.detach()

    hooks = [(n, add_delta) for n in sorted(set(grad_name.values()) - {p.name for p in points
                                                                       if p.kind == "resid_mid"})]
    hooks += [(p.name, observe) for p in points if p.kind == "resid_mid"]
    with torch.enable_grad():
        logits = model.run_with_hooks(run.base, hooks)  # (B, T, V)
        value = metric(logits).float().mean()
        grads = torch.autograd.grad(value, [deltas[n] for n in deltas], allow_unused=True)
    grad_of = {n: (torch.zeros_like(deltas[n]) if g is None else g) for n, g in zip(deltas, grads)}
    scores = {}
    for p in points:
        g = grad_of[grad_name[p.name]]
        diff = run.source[p.name].to(g.dtype) - base_acts[p.name].to(g.dtype)
        scores[p.name] = _per_cell(p.kind, diff * g).detach()
    return AttributionResult(scores, metric.name, float(value.detach()), position_labels(model, run.base),
                             model.cfg.n_layers)


@dataclass
class AttributionCheck:
    """Attribution estimates next to real patching (both as metric changes) and their Pearson correlation."""

    correlation: float
    attribution: PatchResult
    patching: PatchResult

    def view(self):
        """Interactive view (:mod:`mechscope.display`): the estimates and the real patching side by side, same
        cells (hover for the values), with their correlation."""
        from .. import display

        title = "attribution patching vs activation patching"
        if self.attribution.values.numel() == 0:
            return display.empty(title, "no cell was compared")
        return display.panel(title, [self.attribution.view(normalized=False), self.patching.view(normalized=False)],
                             summary=[("Pearson r", self.correlation), ("cells", self.attribution.values.numel())])

    def _repr_html_(self) -> str:
        return self.view().html()


def attribution_check(model: HookedModel, clean: Inputs, corrupted: Inputs,
                      metric: Callable[[Tensor], Tensor] | Metric, *, kind: str = "resid_pre",
                      axis: Literal["pos", "head"] = "pos", layers: Sequence[int] | None = None,
                      direction: Direction = "denoise", batch_size: int = 64) -> AttributionCheck:
    """Compare attribution patching with a real patching sweep of the same cells; report the correlation."""
    metric = as_metric(metric)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = [f"blocks.{layer}.{kind}" for layer in layers]
    attr = attribution_patch(model, clean, corrupted, metric, names=names, direction=direction)
    estimate = attr.sweep(kind, axis, layers)
    real = patch_sweep(model, clean, corrupted, metric, kind=kind, axis=axis, layers=layers, direction=direction,
                       batch_size=batch_size)
    real_delta = PatchResult(real.delta(), real.row_labels, real.col_labels, f"Δ{metric.name} (patching)",
                             title=f"patching {kind}")
    return AttributionCheck(correlation(estimate.values, real_delta.values), estimate, real_delta)

