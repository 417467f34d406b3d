"""Faithfulness of an attribution graph: what it predicts for feature interventions against what they do.

For one prompt and one target token the graph (built for that target, or given) has a *target logit node*: the
target's logit minus the mean logit at the last position (circuit-tracer's demeaned logit; every value and change
below is of that quantity). :func:`faithfulness` takes the graph's top ``n_features`` feature nodes and

1. ablates each alone (activation set to 0) and steers each alone (activation times ``steer``, or plus ``steer``
   with ``steer_mode="add"``), measures the change of the target node and compares it with the prediction;
2. ablates the top features together, and as a control as many random other graph features together;
3. reports Pearson r, sign agreement and errors per measurement setting (:class:`Agreement`).

Ranking (``rank_by``): ``"influence"`` (default) is circuit-tracer's influence with weight 1 on the target logit
node alone (row-normalised ``|adjacency|``, all paths; :func:`mechscope.circuits.scores.influence`);
``"effect"`` is the size of the predicted ablation change ``|activation x total_effect|``.

Prediction. With ``P[i, s] = adjacency[i, s] / activation[s]`` (effect per unit of a feature's activation), a
change ``d`` of the activations of a group ``G`` of features moves every other graph feature ``r`` by its
pre-activation change (slope 1: ReLU / JumpReLU / TopK features equal their pre-activation where active), so
``x_r = P_rr x_r + P_rG d`` and the target moves by ``P_tG d + P_tr x_r`` (a triangular solve: edges run from
earlier to later layers). For one feature this is ``d * total_effect[s]`` with ``total_effect = P_t (I - P)^-1``,
the sum over all graph paths (``direct_effect`` = the edge alone, at the feature's activation). Ablation:
``d = -activation``; steering: ``d = (steer - 1) * activation`` or ``d = steer``.

Measurement settings (``settings``), all intervening on the feature's activation, i.e. at its transcoder's output:

- ``"graph"``: the replacement model frozen as the graph assumes: attention patterns, normalisation scales and error
  nodes frozen at their values on the prompt, every transcoder feature re-encoded from the edited run (active
  features left out of the graph by ``max_feature_nodes`` held at their values). This is linear except where a
  feature switches on or off, so **prediction equals measurement (up to float rounding) exactly when no feature
  crosses its threshold**; ``crossed`` counts the features that did (edited ones excluded). For a graph that
  differentiates through norms or attention (``AttributionGraph.live``) those stay live here too, and the
  prediction is first-order: it equals the measurement only for small changes.
- ``"replacement"``: the same with attention patterns and norm scales recomputed from the edited run: the real
  model's computation with every MLP replaced by its transcoder plus the frozen error term. Differences from the
  prediction come from attention / norm nonlinearity and threshold crossings.
- ``"frozen_attention"`` / ``"frozen_norms"`` (diagnostics, not in the default): the replacement setting with only
  the attention patterns, or only the normalisation scales, frozen as in the graph, to tell which of the two
  separates the graph's predictions from the replacement model.
- ``"real"``: the real model; the edit is applied to the transcoder spliced in at the edited feature's layer (with
  its live error term, :func:`mechscope.circuits.interventions.real_logits`), and every downstream MLP is the
  real MLP, not a transcoder.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..files import atomic_write_text
from ..models.hooked import HookedModel
from ..models.tokens import Inputs
from .attribution import AttributionConfig, attribute
from .graph import AttributionGraph
from .interventions import FeatureIntervention, real_logits
from .replacement import FrozenState, ReplacementModel
from .scores import influence
from .transcoders import Transcoders

Setting = Literal["graph", "replacement", "real"]
SETTINGS: tuple[str, ...] = ("graph", "replacement", "real", "frozen_attention", "frozen_norms")


@dataclass
class FaithfulnessConfig:
    """Options of :func:`faithfulness`."""

    n_features: int = 10
    """Top feature nodes checked one by one (and ablated together)."""
    rank_by: Literal["influence", "effect"] = "influence"
    """How the top features are chosen: influence on the target logit node, or |predicted ablation change|."""
    steer: float = 2.0
    """Steering: multiply the activation by this (steer_mode "scale") or add it (steer_mode "add")."""
    steer_mode: Literal["scale", "add"] = "scale"
    """Whether ``steer`` multiplies or is added to the feature's activation."""
    settings: tuple[str, ...] = ("graph", "replacement", "real")
    """Measurement settings (module docstring): graph, replacement, real; frozen_attention and frozen_norms as
    diagnostics."""
    seed: int = 0
    """Seed of the random control group."""
    batch_size: int = 16
    """Edited copies of the prompt per forward pass (graph and replacement settings)."""

    def __post_init__(self) -> None:
        if self.n_features < 1 or self.batch_size < 1:
            raise ValueError("n_features and batch_size must be >= 1")
        if self.rank_by not in ("influence", "effect"):
            raise ValueError(f"rank_by must be 'influence' or 'effect', got {self.rank_by!r}")
        if self.steer_mode not in ("scale", "add"):
            raise ValueError(f"steer_mode must be 'scale' or 'add', got {self.steer_mode!r}")
        self.settings = tuple(self.settings)
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise ValueError(f"settings must be a non-empty subset of {SETTINGS}, got {self.settings}")


@dataclass
class FeatureRow:
    """One checked feature: the graph's predictions and, per setting, the measured changes of the target node."""

    node_id: str
    layer: int
    pos: int
    index: int
    activation: float
    rank_score: float
    """The ranking score (influence on the target, or |predicted ablation|)."""
    direct_effect: float
    """The edge feature -> target logit node (at the feature's activation)."""
    total_effect: float
    """Change of the target per unit of activation, through every graph path."""
    predicted_ablation: float
    predicted_steer: float
    measured_ablation: dict[str, float] = field(default_factory=dict)
    measured_steer: dict[str, float] = field(default_factory=dict)
    crossed_ablation: dict[str, int] = field(default_factory=dict)
    """Features that switched on or off in the measurement (graph and replacement settings)."""
    crossed_steer: dict[str, int] = field(default_factory=dict)


@dataclass
class Agreement:
    """Predicted vs. measured changes over the checked features."""

    n: int
    pearson: float
    """Pearson r (nan with fewer than 2 rows or no variance)."""
    sign_agreement: float
    """Fraction of rows where prediction and measurement have the same sign."""
    max_abs_error: float
    max_abs_predicted: float


@dataclass
class GroupCheck:
    """Several features ablated together: the graph's prediction and, per setting, the measured change."""

    node_ids: list[str]
    predicted: float
    measured: dict[str, float] = field(default_factory=dict)


@dataclass
class FaithfulnessResult:
    """What :func:`faithfulness` found (JSON-serialisable through :meth:`to_json`)."""

    prompt: str
    target_token: int
    target_str: str
    target_value: float
    """The graph's target logit node value (target logit minus mean logit)."""
    n_graph_features: int
    replacement_score: float | None
    completeness_score: float | None
    config: dict[str, Any]
    rows: list[FeatureRow]
    top_group: GroupCheck
    random_group: GroupCheck
    ablation: dict[str, Agreement]
    """Setting -> single-feature ablations, predicted vs. measured."""
    steering: dict[str, Agreement]
    """Setting -> single-feature steering, predicted vs. measured."""
    baseline: dict[str, float]
    """Setting -> the target node's value with no edit (equals ``target_value`` up to float rounding)."""

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1), fsync=True)

    def summary(self) -> str:
        lines = [f"target {self.target_str!r} (logit - mean {self.target_value:.3f}); graph of "
                 f"{self.n_graph_features} features, replacement score {_fmt(self.replacement_score)}, "
                 f"completeness {_fmt(self.completeness_score)}"]
        for s in self.ablation:
            a, st = self.ablation[s], self.steering[s]
            lines.append(f"{s:>11}: ablation r={_fmt(a.pearson)} sign={a.sign_agreement:.2f} | steering "
                         f"r={_fmt(st.pearson)} sign={st.sign_agreement:.2f} | top-{len(self.top_group.node_ids)} "
                         f"together {self.top_group.measured[s]:+.4f} (pred {self.top_group.predicted:+.4f}), "
                         f"random {self.random_group.measured[s]:+.4f} (pred {self.random_group.predicted:+.4f})")
        return "\n".join(lines)

    def view(self) -> Any:
        """Interactive view (:mod:`mechscope.display`): per setting, r and sign agreement of single-feature
        ablations and steering and the joint ablations; per feature, predicted against measured ablation changes
        (features ordered by prediction; hover for the values)."""
        from .. import display

        title = f"faithfulness: {self.prompt!r} -> {self.target_str!r}"
        if not self.rows:
            return display.empty(title, "no graph feature was checked (the graph has no active features)")
        settings = list(self.ablation)
        table = display.table(
            ["setting", "ablation r", "ablation sign", "steering r", "steering sign",
             f"top {len(self.top_group.node_ids)} together (pred {self.top_group.predicted:+.3f})",
             f"{len(self.random_group.node_ids)} random (pred {self.random_group.predicted:+.3f})"],
            [[st, self.ablation[st].pearson, self.ablation[st].sign_agreement, self.steering[st].pearson,
              self.steering[st].sign_agreement, self.top_group.measured.get(st), self.random_group.measured.get(st)]
             for st in settings], title="predicted vs measured, per setting")
        rows = sorted(self.rows, key=lambda r: r.predicted_ablation)
        series: dict[str, list[float | None]] = {"predicted": [r.predicted_ablation for r in rows]}
        for st in settings:
            series[f"measured ({st})"] = [r.measured_ablation.get(st) for r in rows]
        lines = display.line_plot(series, [r.node_id for r in rows], title="single-feature ablations",
                                  y_label="change of target logit - mean logit")
        summary: list[tuple[str, Any]] = [("target", f"{self.target_str!r} ({self.target_value:+.3f})"),
                                          ("graph features", self.n_graph_features),
                                          ("replacement score", _fmt(self.replacement_score)),
                                          ("completeness score", _fmt(self.completeness_score))]
        summary += [(f"ablation r ({st})", _fmt(self.ablation[st].pearson)) for st in settings]
        return display.panel(title, [table, lines], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def _clean(x: Any) -> Any:
    """NaN / inf -> None (JSON has neither)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------- prediction
def _per_unit(graph: AttributionGraph, target: int) -> tuple[Tensor, Tensor]:
    """``(P_FF, p_t)`` in float64: feature -> feature and feature -> target effects per unit of activation."""
    F = graph.n_features
    act = graph.activations.double()
    inv = torch.where(act != 0, 1.0 / act, torch.zeros((), dtype=torch.float64))
    P = graph.adjacency[:F, :F].double() * inv[None]  # (F, F)
    return P, graph.adjacency[target, :F].double() * inv  # (F,)


def _solve(M: Tensor, b: Tensor) -> Tensor:
    """``M x = b`` for ``M = I - P`` (or its transpose): triangular in node order, since edges only run from earlier
    to later layers; a general solve otherwise."""
    if M.numel() == 0:
        return b.clone()
    for upper in (False, True):
        if bool(((torch.triu(M, 1) if not upper else torch.tril(M, -1)) == 0).all()):
            return torch.linalg.solve_triangular(M, b[:, None], upper=upper)[:, 0]
    return torch.linalg.solve(M, b)


def total_effects(graph: AttributionGraph, target: int) -> Float[Tensor, " n_features"]:
    """Change of node ``target`` per unit of each feature's activation, through every path of the graph."""
    P, p_t = _per_unit(graph, target)
    eye = torch.eye(len(p_t), dtype=torch.float64)
    return _solve((eye - P).T.contiguous(), p_t)  # (I - P)^T tau = p_t


def predict_change(graph: AttributionGraph, target: int, deltas: dict[int, float]) -> float:
    """Predicted change of node ``target`` when feature nodes ``deltas`` (index -> activation change) are set
    together (held there), the other graph features following their pre-activations (module docstring)."""
    P, p_t = _per_unit(graph, target)
    F = graph.n_features
    G = torch.tensor(sorted(deltas), dtype=torch.long)
    if len(G) and (int(G.min()) < 0 or int(G.max()) >= F):
        raise ValueError(f"feature node indices must be in [0, {F})")
    d = torch.tensor([deltas[int(i)] for i in G], dtype=torch.float64)
    rest = torch.ones(F, dtype=torch.bool)
    rest[G] = False
    r = rest.nonzero(as_tuple=True)[0]
    x_r = _solve(torch.eye(len(r), dtype=torch.float64) - P[r][:, r], P[r][:, G] @ d)
    return float(p_t[G] @ d + p_t[r] @ x_r)


def _agreement(pred: Sequence[float], meas: Sequence[float]) -> Agreement:
    p, m = torch.tensor(pred, dtype=torch.float64), torch.tensor(meas, dtype=torch.float64)
    n = len(p)
    r = float("nan")
    if n >= 2 and float(p.std()) > 0 and float(m.std()) > 0:
        r = float(torch.corrcoef(torch.stack([p, m]))[0, 1])
    sign = float((torch.sign(p) == torch.sign(m)).double().mean()) if n else float("nan")
    err = float((p - m).abs().max()) if n else 0.0
    return Agreement(n, r, sign, err, float(p.abs().max()) if n else 0.0)


# ---------------------------------------------------------------------------------------------- measurement
Edit = tuple[int, int, int, float]
"""(layer, pos, index, factor): the feature's activation is multiplied by ``factor`` (0 ablates)."""


def _editor(state: FrozenState, hold: dict[int, Tensor], chunk: list[list[Edit]],
            count: Tensor) -> Callable[[int, Tensor], Tensor]:
    """The ``edit`` of one batch of ``chunk`` edit sets: holds the ``hold`` features at their frozen values, applies
    each row's edits and adds each row's threshold crossings (edited features excluded) to ``count``."""

    def edit(layer: int, acts: Tensor) -> Tensor:
        frozen = state.acts[layer]  # (T, S)
        acts = acts.clone()  # (B, T, S), re-encoded from this run
        changed = (acts != 0) != (frozen != 0)[None]
        if layer in hold:
            acts = torch.where(hold[layer][None], frozen[None], acts)
            changed &= ~hold[layer][None]
        for b, edits in enumerate(chunk):
            for l, pos, idx, factor in edits:
                if l == layer:
                    changed[b, pos, idx] = False
                    acts[b, pos, idx] = acts[b, pos, idx] * factor
        count.add_(changed.flatten(1).sum(1))
        return acts

    return edit


def _measure_replacement(rm: ReplacementModel, state: FrozenState, graph: AttributionGraph, token: int,
                         edit_sets: list[list[Edit]], setting: str, batch_size: int) -> tuple[list[float], list[int]]:
    """Target node value and number of threshold crossings for each edit set (graph / replacement settings)."""
    in_graph = {l: torch.zeros_like(a, dtype=torch.bool) for l, a in state.acts.items()}
    for layer, pos, idx in graph.features.tolist():
        in_graph[layer][pos, idx] = True
    hold = {l: (state.acts[l] != 0) & ~in_graph[l] for l in state.acts} if setting == "graph" else {}
    values: list[float] = []
    crossed: list[int] = []
    for start in range(0, len(edit_sets), batch_size):
        chunk = edit_sets[start:start + batch_size]
        B = len(chunk)
        count = torch.zeros(B, dtype=torch.long)
        with torch.no_grad():
            run = rm.run(state, batch=B, edit=_editor(state, hold, chunk, count), propagate=True,
                         freeze_attention=(setting == "graph" and "attention" not in graph.live)
                         or setting == "frozen_attention",
                         freeze_norms=(setting == "graph" and "norms" not in graph.live) or setting == "frozen_norms")
        logits = run.logits[:, -1].double()  # (B, V)
        values += (logits[:, token] - logits.mean(-1)).tolist()
        crossed += count.tolist()
    return values, crossed


def _measure_real(model: HookedModel, transcoders: Transcoders, state: FrozenState, token: int,
                  edit_sets: list[list[Edit]]) -> list[float]:
    out = []
    for edits in edit_sets:
        logits = real_logits(model, transcoders, state.tokens,
                             [FeatureIntervention(l, p, i, "scale", f) for l, p, i, f in edits]).double()
        out.append(float(logits[token] - logits.mean()))
    return out


# ---------------------------------------------------------------------------------------------- the check
def _rank(graph: AttributionGraph, target: int, tau: Tensor, rank_by: str) -> Tensor:
    F = graph.n_features
    if rank_by == "influence":
        w = torch.zeros(graph.n_nodes)
        w[target] = 1.0
        return influence(graph.adjacency, w)[:F].double()
    return (graph.activations.double() * tau).abs()


def faithfulness(model: HookedModel, transcoders: Transcoders, prompt: Inputs, target: int | str, *,
                 cfg: FaithfulnessConfig | None = None, graph: AttributionGraph | None = None,
                 attribution: AttributionConfig | None = None,
                 replacement: ReplacementModel | None = None) -> FaithfulnessResult:
    """Check ``graph`` (built here for ``target`` when not given, with ``attribution``) against interventions on
    its top features in each measurement setting; see the module docstring for every definition."""
    cfg = cfg or FaithfulnessConfig()
    rm = replacement or ReplacementModel(model, transcoders)
    token = model.to_single_token(target) if isinstance(target, str) else int(target)
    if graph is None:
        graph = attribute(model, transcoders, prompt, target_tokens=[token], cfg=attribution, replacement=rm)
    hits = (graph.logit_tokens == token).nonzero(as_tuple=True)[0]
    if len(hits) == 0:
        raise ValueError(f"token {token} is not a logit node of the graph (its logit tokens are "
                         f"{graph.logit_tokens.tolist()}); build the graph with target_tokens=[{token}]")
    t = graph.logit_offset + int(hits[0])
    state = rm.freeze(prompt)
    if not torch.equal(state.tokens[0].cpu(), graph.prompt_tokens.cpu()):
        raise ValueError("the graph was built for a different prompt (its tokens differ)")
    if graph.n_features == 0:
        raise ValueError("the graph has no feature nodes to check")

    tau = total_effects(graph, t)  # (F,)
    score = _rank(graph, t, tau, cfg.rank_by)
    n = min(cfg.n_features, graph.n_features)
    top = score.argsort(descending=True)[:n].tolist()
    others = [i for i in range(graph.n_features) if i not in set(top)]
    g = torch.Generator().manual_seed(cfg.seed)
    rand = [others[int(j)] for j in torch.randperm(len(others), generator=g)[:n].tolist()]

    act = graph.activations.double()
    factor = (lambda a: cfg.steer) if cfg.steer_mode == "scale" else (lambda a: (a + cfg.steer) / a)
    rows = []
    for i in top:
        layer, pos, idx = graph.features[i].tolist()
        a = float(act[i])
        d_steer = (cfg.steer - 1.0) * a if cfg.steer_mode == "scale" else cfg.steer
        rows.append(FeatureRow(graph.node_id(i), layer, pos, idx, a, float(score[i]), float(graph.adjacency[t, i]),
                               float(tau[i]), -a * float(tau[i]), d_steer * float(tau[i])))

    def edits(nodes: Sequence[int], f: Any) -> list[Edit]:
        return [(*graph.features[i].tolist(), f(float(act[i]))) for i in nodes]

    edit_sets: list[list[Edit]] = ([[]] + [edits([i], lambda a: 0.0) for i in top]
                                   + [edits([i], factor) for i in top]
                                   + [edits(top, lambda a: 0.0), edits(rand, lambda a: 0.0)])
    top_group = GroupCheck([graph.node_id(i) for i in top], predict_change(graph, t, {i: -float(act[i]) for i in top}))
    rand_group = GroupCheck([graph.node_id(i) for i in rand],
                            predict_change(graph, t, {i: -float(act[i]) for i in rand}) if rand else 0.0)
    ablation, steering, baseline = {}, {}, {}
    for s in cfg.settings:
        if s == "real":
            vals, crossed = _measure_real(model, transcoders, state, token, edit_sets), None
        else:
            vals, crossed = _measure_replacement(rm, state, graph, token, edit_sets, s, cfg.batch_size)
        base = vals[0]
        baseline[s] = base
        for k, row in enumerate(rows):
            row.measured_ablation[s] = vals[1 + k] - base
            row.measured_steer[s] = vals[1 + n + k] - base
            if crossed is not None:
                row.crossed_ablation[s], row.crossed_steer[s] = crossed[1 + k], crossed[1 + n + k]
        top_group.measured[s] = vals[1 + 2 * n] - base
        rand_group.measured[s] = vals[2 + 2 * n] - base if rand else 0.0
        ablation[s] = _agreement([r.predicted_ablation for r in rows], [r.measured_ablation[s] for r in rows])
        steering[s] = _agreement([r.predicted_steer for r in rows], [r.measured_steer[s] for r in rows])
    return FaithfulnessResult(
        prompt=prompt if isinstance(prompt, str) else "".join(graph.token_strs), target_token=token,
        target_str=graph.logit_token_strs[int(hits[0])], target_value=float(graph.logit_values[int(hits[0])]),
        n_graph_features=graph.n_features, replacement_score=graph.replacement_score,
        completeness_score=graph.completeness_score, config=asdict(cfg), rows=rows, top_group=top_group,
        random_group=rand_group, ablation=ablation, steering=steering, baseline=baseline)


__all__ = ["Agreement", "FaithfulnessConfig", "FaithfulnessResult", "FeatureRow", "GroupCheck", "faithfulness",
           "predict_change", "total_effects"]
