"""Interventions on attribution-graph nodes, in the replacement model and in the real model, against predictions.

- :func:`replacement_values` replays the frozen replacement model with features ablated / scaled / clamped (and
  optionally tokens or error nodes scaled) and reads every graph target: feature pre-activations and logits minus
  the mean logit. With ``propagate=False`` (features held) the change equals what the edges predict exactly.
- :func:`real_logits` edits the same features in the *real* model, through transcoders spliced with their error
  terms (:func:`mechscope.dictionaries.spliced`, ``keep_error=True``): the model runs unchanged except for the
  edited features' decoder contributions, and everything downstream (real MLPs, attention) responds.
- :func:`predict_ablation` propagates an ablation through the graph's linear edges (downstream features move by
  their pre-activation change); :func:`ablation_study` ablates the most influential features of the pruned graph
  one group at a time and reports predicted vs. actual target-logit changes and their correlation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..dictionaries.clt import CrossLayerTranscoder
from ..dictionaries.splice import Splice, spliced
from ..models.hooked import HookedModel
from ..models.tokens import Inputs
from .graph import AttributionGraph
from .replacement import FeatureEdit, FrozenState, ReplacementModel
from .transcoders import Transcoders

log = logging.getLogger(__name__)

Mode = Literal["ablate", "scale", "clamp"]


@dataclass(frozen=True)
class FeatureIntervention:
    """Set feature ``index`` of ``layer`` at ``pos`` (None = every position): ablate (0), scale by or clamp to
    ``value``."""

    layer: int
    pos: int | None
    index: int
    mode: Mode = "ablate"
    value: float = 0.0

    def apply(self, acts: Tensor) -> Tensor:
        """``acts`` (..., pos, d_sae) -> edited copy."""
        sl = (..., slice(None) if self.pos is None else self.pos, self.index)
        acts = acts.clone()
        if self.mode == "ablate":
            acts[sl] = 0.0
        elif self.mode == "scale":
            acts[sl] = acts[sl] * self.value
        elif self.mode == "clamp":
            acts[sl] = self.value
        else:
            raise ValueError(f"mode must be ablate, scale or clamp, got {self.mode!r}")
        return acts


def as_edit(edits: Sequence[FeatureIntervention]) -> FeatureEdit:
    """One ``edit(layer, acts)`` callback applying every intervention of that layer."""
    by_layer: dict[int, list[FeatureIntervention]] = {}
    for e in edits:
        by_layer.setdefault(e.layer, []).append(e)

    def edit(layer: int, acts: Tensor) -> Tensor:
        for e in by_layer.get(layer, ()):
            acts = e.apply(acts)
        return acts
    return edit


def graph_edits(graph: AttributionGraph, nodes: Sequence[int], mode: Mode = "ablate",
                value: float = 0.0) -> list[FeatureIntervention]:
    """Interventions on feature nodes ``nodes`` (indices into ``graph``)."""
    out = []
    for i in nodes:
        if graph.node_kind(i) != "feature":
            raise ValueError(f"node {i} ({graph.node_id(i)}) is not a feature node")
        layer, pos, idx = graph.features[i].tolist()
        out.append(FeatureIntervention(layer, pos, idx, mode, value))
    return out


@torch.no_grad()
def replacement_values(rm: ReplacementModel, state: FrozenState, graph: AttributionGraph,
                       edits: Sequence[FeatureIntervention] = (), *, propagate: bool = False,
                       embed_scale: Tensor | None = None, error_scale: dict[int, Tensor] | None = None,
                       edit: FeatureEdit | None = None, batch: int = 1) -> Float[Tensor, "... n_nodes"]:
    """Values of every target node of ``graph`` after the edits: feature pre-activations and logits minus the mean
    logit (zeros at error and token nodes). ``edit`` / ``batch`` / (batch, pos) scales run several edits at once
    and return (batch, n_nodes)."""
    run = rm.run(state, edit=edit or (as_edit(edits) if edits else None), propagate=propagate, batch=batch,
                 embed_scale=embed_scale, error_scale=error_scale)
    vals = torch.zeros(batch, graph.n_nodes)
    for l in sorted(set(graph.features[:, 0].tolist())):
        m = (graph.features[:, 0] == l).nonzero(as_tuple=True)[0]
        pre = rm.feature_pre_acts(run, l).float()  # (B, T, S)
        vals[:, m] = pre[:, graph.features[m, 1], graph.features[m, 2]]
    logits = run.logits[:, -1].float()  # (B, V)
    vals[:, graph.logit_offset:] = logits[:, graph.logit_tokens] - logits.mean(-1, keepdim=True)
    return vals[0] if batch == 1 else vals


@torch.no_grad()
def real_logits(model: HookedModel, transcoders: Transcoders, prompt: Inputs,
                edits: Sequence[FeatureIntervention] = ()) -> Float[Tensor, " vocab"]:
    """Last-position logits of the real model with the edits applied through spliced transcoders (error kept)."""
    by_layer: dict[int, list[FeatureIntervention]] = {}
    for e in edits:
        by_layer.setdefault(e.layer, []).append(e)

    def editor(layer: int):
        def fn(f: Tensor) -> Tensor:
            for e in by_layer.get(layer, ()):
                f = e.apply(f)
            return f
        return fn

    if isinstance(transcoders, CrossLayerTranscoder):
        first = transcoders.options.first_layer
        splices = [Splice(transcoders, edit=lambda f, src: editor(first + src)(f))]
    else:
        from .transcoders import _layer_of

        tcs = list(transcoders.values()) if isinstance(transcoders, dict) else list(transcoders)
        splices = [Splice(d, edit=editor(_layer_of(d))) for d in tcs if _layer_of(d) in by_layer]
    if not splices:
        return model(prompt)[0, -1].float()
    with spliced(model, splices, keep_error=True):
        return model(prompt)[0, -1].float()


def predict_ablation(graph: AttributionGraph, nodes: Sequence[int]) -> Float[Tensor, " n_nodes"]:
    """Change of every node's value when feature ``nodes`` are ablated, propagated through the graph's edges.

    A downstream feature's activation is taken to move by its pre-activation change (ReLU slope 1 where active);
    errors and tokens stay fixed. Exact in the replacement model while no feature crosses its threshold.
    """
    F = graph.n_features
    per_unit = torch.zeros(graph.n_nodes, graph.n_nodes)
    act = graph.activations.clamp_min(1e-12)
    per_unit[:, :F] = graph.adjacency[:, :F] / act[None]  # effect per unit of source activation
    group = torch.zeros(graph.n_nodes, dtype=torch.bool)
    group[list(nodes)] = True
    fixed = torch.zeros(graph.n_nodes)
    fixed[:F] = -graph.activations
    active = torch.zeros(graph.n_nodes)
    active[:F] = (graph.activations > 0).float()
    delta_act = torch.where(group, fixed, torch.zeros(()))  # change of each feature's activation
    for _ in range(graph.n_layers + 2):
        new = torch.where(group, fixed, (per_unit @ delta_act) * active)
        if torch.allclose(new, delta_act, atol=0, rtol=0):
            break
        delta_act = new
    total = per_unit @ delta_act  # change of every target value
    total[group] = fixed[group]
    return total


@dataclass
class AblationStudy:
    """Predicted vs. actual changes of the top target logit (minus mean logit) for single-feature ablations."""

    nodes: list[int]
    node_ids: list[str]
    predicted_direct: Tensor
    """The edge feature -> logit (direct effect) with its sign flipped."""
    predicted_total: Tensor
    """:func:`predict_ablation` at the target logit."""
    actual_replacement: Tensor
    """Change in the replacement model with downstream features re-encoded (propagate=True)."""
    actual_real: Tensor
    """Change in the real model (transcoders spliced with error terms)."""

    def correlations(self) -> dict[str, float]:
        def r(a: Tensor, b: Tensor) -> float:
            if len(a) < 2:
                return float("nan")
            return float(torch.corrcoef(torch.stack([a.float(), b.float()]))[0, 1])
        return {"direct_vs_real": r(self.predicted_direct, self.actual_real),
                "total_vs_real": r(self.predicted_total, self.actual_real),
                "total_vs_replacement": r(self.predicted_total, self.actual_replacement)}

    def view(self):
        """Interactive view (:mod:`mechscope.display`): predicted and measured change per ablated feature (a
        point per feature and series, hover for the value), the correlations, and a table."""
        from .. import display

        title = "single-feature ablations: predicted vs measured"
        if not self.node_ids:
            return display.empty(title, "no feature was ablated")
        series = {"predicted (direct edge)": self.predicted_direct, "predicted (total)": self.predicted_total,
                  "measured, replacement model": self.actual_replacement, "measured, real model": self.actual_real}
        rows = [[n, *(float(s[i]) for s in series.values())] for i, n in enumerate(self.node_ids)]
        summary = [(f"r {k.replace('_', ' ')}", v) for k, v in self.correlations().items()]
        return display.panel(title, [
            display.line_plot(series, self.node_ids, title="change of the target logit per ablated feature",
                              y_label="Δ logit - mean"),
            display.table(["feature node", *series], rows, title="per feature")], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def top_feature_nodes(graph: AttributionGraph, k: int, node_threshold: float = 0.8,
                      edge_threshold: float = 0.98) -> list[int]:
    """The ``k`` most influential feature nodes: those kept by pruning first, then (when pruning keeps fewer, as
    with weak transcoders whose error nodes dominate) the next most influential features."""
    pr = graph.prune(node_threshold, edge_threshold)
    inf = pr.influence[: graph.n_features]
    order = sorted(range(graph.n_features), key=lambda i: (not bool(pr.node_mask[i]), -float(inf[i])))
    return [i for i in order[:k] if inf[i] > 0]


def ablation_study(model: HookedModel, transcoders: Transcoders, prompt: Inputs, graph: AttributionGraph, k: int = 10,
                   rm: ReplacementModel | None = None, target: int = 0) -> AblationStudy:
    """Ablate each of the top-``k`` pruned-graph features alone; compare predicted and actual logit changes."""
    rm = rm or ReplacementModel(model, transcoders)
    state = rm.freeze(prompt)
    nodes = top_feature_nodes(graph, k)
    t = graph.logit_offset + target
    tok = int(graph.logit_tokens[target])
    base_real = real_logits(model, transcoders, prompt)
    base_val = base_real[tok] - base_real.mean()
    base_rep = replacement_values(rm, state, graph, propagate=True)[t]
    pd, pt, ar, ap = [], [], [], []
    for i in nodes:
        edits = graph_edits(graph, [i])
        pd.append(-graph.adjacency[t, i])
        pt.append(predict_ablation(graph, [i])[t])
        real = real_logits(model, transcoders, prompt, edits)
        ar.append(real[tok] - real.mean() - base_val)
        ap.append(replacement_values(rm, state, graph, edits, propagate=True)[t] - base_rep)
    st = lambda xs: torch.stack(xs) if xs else torch.zeros(0)  # noqa: E731
    return AblationStudy(nodes, [graph.node_id(i) for i in nodes], st(pd), st(pt), st(ap), st(ar))
