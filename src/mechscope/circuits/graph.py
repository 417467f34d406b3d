"""Attribution graphs: the tensor layout, pruning by influence, supernodes, and the JSON file.

Tensor layout (:class:`AttributionGraph`)
-----------------------------------------
Nodes are numbered in four consecutive blocks::

    [0, F)                       feature nodes, sorted by (layer, pos, index); ``features[i] = (layer, pos, index)``
    [F, F + L*T)                 error nodes, layer-major: node F + l*T + t is the error of MLP l at position t
    [F + L*T, F + L*T + T)       token (embedding) nodes, one per prompt position
    [F + L*T + T, N)             logit nodes, one per target token (``logit_tokens``), at the last position

``adjacency[target, source]`` is the direct linear effect of ``source`` (at its actual value) on ``target`` in the
frozen replacement model: on a feature's pre-activation, or on a logit minus the mean logit (a graph built with ``live``
norms or attention holds first-order effects through them instead; ``AttributionGraph.live``). Rows of error and token
nodes are zero (they are sources only); scaling a source by ``c`` changes each target by ``(c-1) * edge``.

Pruning (:meth:`AttributionGraph.prune`)
----------------------------------------
Influence is computed on the row-normalised absolute adjacency ``A``: with logit weights ``w`` (target
probabilities), ``influence = w (A + A^2 + ...)``. Nodes are kept (features and errors) while their cumulative
share of total influence, in decreasing order, stays within ``node_threshold``; tokens and logits are always kept.
Edge scores are ``A[t, s] * (influence[t] + w[t])`` on the node-pruned graph; edges are kept up to the cumulative
share ``edge_threshold``. Finally features and errors without a kept outgoing edge (and features without a kept
incoming edge) are dropped, repeatedly until stable.

Scores (``replacement_score``, ``completeness_score``; :mod:`mechscope.circuits.scores`)
----------------------------------------------------------------------------------------
circuit-tracer's ``compute_graph_scores``, on the *unpruned* adjacency, with ``A`` the row-normalised absolute
adjacency, ``w`` the logit weights above and ``I = w (A + A^2 + ...)`` the influence:

- replacement score ``= sum(I[tokens]) / (sum(I[tokens]) + sum(I[errors]))``: the logits' influence flows back
  through the normalised edges until it ends at token or error nodes; this is the fraction ending at tokens, i.e.
  carried through features alone. 1 when no path from a token to a logit passes an error node.
- completeness score ``= sum_i (1 - e_i) (I_i + w_i) / sum_i (I_i + w_i)`` over every node, where
  ``e_i = sum_{j in errors} A[i, j]`` is the share of node ``i``'s normalised input from error nodes (0 for nodes
  without inputs: tokens, errors and any feature without incoming edges, which therefore count as complete).

A graph whose error nodes carry nothing (zero error columns) scores 1 and 1; a graph without edges gets ``nan``
(``null`` in JSON). Both are computed when the graph is built, kept on the object and written to the metadata.
Note: circuit-tracer zeroes the error nodes at a BOS position 0, mechscope keeps them (see
``AttributionConfig.drop_bos_features``), so on prompts that start with BOS the two libraries' scores differ by
that convention; with the position-0 error columns zeroed they agree (bench/RESULTS.md).

JSON file (:meth:`AttributionGraph.to_json`), the layout circuit-tracer writes and Neuronpedia's viewer reads
------------------------------------------------------------------------------------------------------------
::

    {"metadata": {"slug", "scan", "transcoder_list": [], "prompt_tokens": [str], "prompt", "node_threshold",
                  "edge_threshold", "schema_version": 1, "generator": "mechscope", "replacement_score",
                  "completeness_score", "live"},
     "qParams": {"pinnedIds": [], "supernodes": [[name, node_id, ...]], "linkType": "both", "clickedId": "",
                 "sg_pos": ""},
     "nodes": [{"node_id", "jsNodeId", "feature", "layer", "ctx_idx", "feature_type", "token_prob",
                "is_target_logit", "run_idx": 0, "reverse_ctx_idx": 0, "clerp", "influence", "activation"}],
     "links": [{"source": node_id, "target": node_id, "weight": float}]}

Node ids: features ``"{layer}_{index}_{pos}"`` (``feature`` = Cantor pairing of layer and index, ``feature_type``
``"cross layer transcoder"``), errors ``"{layer}_-1_{pos}"`` (``"mlp reconstruction error"``), tokens
``"E_{token_id}_{pos}"`` (layer ``"E"``, ``"embedding"``), logits ``"{L+1}_{token_id}_{T-1}"`` (``"logit"``, with
``token_prob`` and ``is_target_logit`` for the top one). ``influence`` is the node's cumulative influence share (the
pruning score), ``activation`` the feature activation. ``layer`` is a string, as the viewer expects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..files import atomic_write, atomic_write_text
from .scores import GraphScores, graph_scores, influence, normalize_rows


@dataclass
class PruneResult:
    """Masks from :meth:`AttributionGraph.prune`."""

    node_mask: Bool[Tensor, " n"]
    edge_mask: Bool[Tensor, "n n"]
    """``[target, source]``."""
    cumulative_influence: Float[Tensor, " n"]
    """Each node's position in the cumulative influence ranking (smaller = more influential)."""
    influence: Float[Tensor, " n"]
    """Raw influence on the weighted logits."""

    def view(self, max_nodes: int = 30):
        """Interactive view (:mod:`mechscope.display`): how much pruning kept, and the kept nodes' influence
        (bars by node index, hover for the value); :meth:`AttributionGraph.view` draws the pruned graph itself."""
        from .. import display

        n = int(self.node_mask.numel())
        if n == 0:
            return display.empty("pruned graph", "the graph has no nodes")
        kept = self.node_mask.nonzero().flatten().tolist()
        kept.sort(key=lambda i: -float(self.influence[i]))
        summary = [("nodes kept", f"{len(kept)} of {n}"),
                   ("edges kept", int(self.edge_mask.sum()))]
        if not kept:
            return display.panel("pruned graph", [display.empty("kept nodes", "pruning kept no node")],
                                 summary=summary)
        top = kept[:max_nodes]
        return display.panel("pruned graph", [display.bar_chart(
            [f"node {i}" for i in top], [float(self.influence[i]) for i in top], value_name="influence",
            title=f"kept nodes by influence on the logits (top {len(top)})")], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def _threshold_mask(scores: Tensor, threshold: float) -> Tensor:
    """Keep the top scores whose cumulative share stays within ``threshold`` (at least the first)."""
    flat = scores.flatten()
    order = flat.argsort(descending=True)
    share = flat[order].cumsum(0) / flat.sum().clamp_min(1e-10)
    n = int((share < threshold).sum()) + 1
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[order[:n]] = True
    return mask.reshape(scores.shape) & (scores > 0)


@dataclass
class AttributionGraph:
    """An attribution graph (layout in the module docstring)."""

    prompt_tokens: Int[Tensor, " pos"]
    token_strs: list[str]
    features: Int[Tensor, "n_features 3"]
    """(layer, pos, index) of each feature node."""
    activations: Float[Tensor, " n_features"]
    pre_activations: Float[Tensor, " n_features"]
    logit_tokens: Int[Tensor, " n_logits"]
    logit_token_strs: list[str]
    logit_probs: Float[Tensor, " n_logits"]
    logit_values: Float[Tensor, " n_logits"]
    """Target logits minus the mean logit (the quantity logit edges explain)."""
    n_layers: int
    adjacency: Float[Tensor, "n n"]
    model_name: str = ""
    replacement_score: float | None = None
    """circuit-tracer's replacement score of the unpruned graph (module docstring); computed at construction."""
    completeness_score: float | None = None
    """circuit-tracer's completeness score of the unpruned graph (module docstring); computed at construction."""
    live: tuple[str, ...] = ()
    """What the edges differentiate through instead of freezing: ``"norms"`` and/or ``"attention"`` (empty: the
    frozen linear replacement model, circuit-tracer's definition; ``AttributionConfig.live_norms``)."""

    def __post_init__(self) -> None:
        self.live = tuple(self.live)
        unknown = set(self.live) - {"norms", "attention"}
        if unknown:
            raise ValueError(f"AttributionGraph.live may hold 'norms' and 'attention', got {sorted(unknown)}")
        if self.replacement_score is None or self.completeness_score is None:
            self.replacement_score, self.completeness_score = self.scores()

    # ------------------------------------------------------------------ layout
    @property
    def n_pos(self) -> int:
        return len(self.prompt_tokens)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def error_offset(self) -> int:
        return self.n_features

    @property
    def token_offset(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_offset(self) -> int:
        return self.token_offset + self.n_pos

    @property
    def n_nodes(self) -> int:
        return self.logit_offset + len(self.logit_tokens)

    def error_index(self, layer: int, pos: int) -> int:
        return self.error_offset + layer * self.n_pos + pos

    def node_kind(self, i: int) -> str:
        if i < self.error_offset:
            return "feature"
        if i < self.token_offset:
            return "error"
        return "token" if i < self.logit_offset else "logit"

    def node_id(self, i: int) -> str:
        kind = self.node_kind(i)
        if kind == "feature":
            layer, pos, idx = self.features[i].tolist()
            return f"{layer}_{idx}_{pos}"
        if kind == "error":
            layer, pos = divmod(i - self.error_offset, self.n_pos)
            return f"{layer}_-1_{pos}"
        if kind == "token":
            pos = i - self.token_offset
            return f"E_{int(self.prompt_tokens[pos])}_{pos}"
        j = i - self.logit_offset
        return f"{self.n_layers + 1}_{int(self.logit_tokens[j])}_{self.n_pos - 1}"

    def node_ids(self) -> list[str]:
        return [self.node_id(i) for i in range(self.n_nodes)]

    def logit_weights(self) -> Tensor:
        w = torch.zeros(self.n_nodes)
        w[self.logit_offset:] = self.logit_probs
        return w

    def scores(self) -> GraphScores:
        """Replacement and completeness scores of the current adjacency (recomputed; module docstring)."""
        return graph_scores(self.adjacency, self.logit_weights(), slice(self.error_offset, self.token_offset),
                            slice(self.token_offset, self.logit_offset))

    # ------------------------------------------------------------------ pruning
    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PruneResult:
        """Node and edge pruning by cumulative influence (see the module docstring)."""
        if not (0 < node_threshold <= 1 and 0 < edge_threshold <= 1):
            raise ValueError("thresholds must be in (0, 1]")
        w = self.logit_weights()
        inf = influence(self.adjacency, w)
        always = torch.zeros(self.n_nodes, dtype=torch.bool)
        always[self.token_offset:] = True
        prunable = ~always
        node_mask = always.clone()
        node_mask[prunable] = _threshold_mask(inf[prunable], node_threshold)
        pruned = self.adjacency.clone()
        pruned[~node_mask] = 0
        pruned[:, ~node_mask] = 0
        node_inf = influence(pruned, w) + w
        scores = normalize_rows(pruned) * node_inf[:, None]
        edge_mask = _threshold_mask(scores, edge_threshold)
        while True:
            before = node_mask.clone()
            node_mask[prunable] &= edge_mask[:, prunable].any(0)  # has a kept outgoing edge
            node_mask[: self.n_features] &= edge_mask[: self.n_features].any(1)  # features: an incoming edge
            edge_mask[~node_mask] = False
            edge_mask[:, ~node_mask] = False
            if torch.equal(before, node_mask):
                break
        order = inf.argsort(descending=True)
        cum = torch.zeros(self.n_nodes)
        cum[order] = inf[order].cumsum(0) / inf.sum().clamp_min(1e-10)
        return PruneResult(node_mask, edge_mask, cum, inf)

    # ------------------------------------------------------------------ JSON
    def to_json(self, slug: str = "graph", node_threshold: float = 0.8, edge_threshold: float = 0.98,
                supernodes: list[list[str]] | None = None, scan: str | None = None,
                prompt: str | None = None) -> dict[str, Any]:
        """The pruned graph in the viewer's JSON layout (module docstring)."""
        pr = self.prune(node_threshold, edge_threshold)
        ids = self.node_ids()
        nodes = []
        for i in pr.node_mask.nonzero(as_tuple=True)[0].tolist():
            nodes.append(self._node_json(i, ids[i], float(pr.cumulative_influence[i])))
        tgt, src = pr.edge_mask.nonzero(as_tuple=True)
        links = [{"source": ids[s], "target": ids[t], "weight": float(self.adjacency[t, s])}
                 for t, s in zip(tgt.tolist(), src.tolist())]
        meta = {"slug": slug, "scan": scan or self.model_name, "transcoder_list": [],
                "prompt_tokens": self.token_strs, "prompt": prompt if prompt is not None else "".join(self.token_strs),
                "node_threshold": node_threshold, "edge_threshold": edge_threshold, "schema_version": 1,
                "generator": "mechscope", "replacement_score": _finite(self.replacement_score),
                "completeness_score": _finite(self.completeness_score), "live": list(self.live)}
        q = {"pinnedIds": [], "supernodes": supernodes or [], "linkType": "both", "clickedId": "", "sg_pos": ""}
        return {"metadata": meta, "qParams": q, "nodes": nodes, "links": links}

    def _node_json(self, i: int, node_id: str, infl: float) -> dict[str, Any]:
        kind = self.node_kind(i)
        base: dict[str, Any] = {"node_id": node_id, "token_prob": 0.0, "is_target_logit": False, "run_idx": 0,
                                "reverse_ctx_idx": 0, "clerp": "", "influence": infl, "activation": None}
        if kind == "feature":
            layer, pos, idx = self.features[i].tolist()
            base.update(feature=(layer + idx) * (layer + idx + 1) // 2 + idx, layer=str(layer), ctx_idx=pos,
                        feature_type="cross layer transcoder", jsNodeId=f"{layer}_{idx}-0",
                        activation=float(self.activations[i]))
        elif kind == "error":
            layer, pos = divmod(i - self.error_offset, self.n_pos)
            base.update(feature=-1, layer=str(layer), ctx_idx=pos, feature_type="mlp reconstruction error",
                        jsNodeId=f"{layer}_-1-{pos}")
        elif kind == "token":
            pos = i - self.token_offset
            tok = int(self.prompt_tokens[pos])
            base.update(feature=pos, layer="E", ctx_idx=pos, feature_type="embedding", jsNodeId=f"E_{tok}-{pos}",
                        clerp=self.token_strs[pos])
        else:
            j = i - self.logit_offset
            tok, p = int(self.logit_tokens[j]), float(self.logit_probs[j])
            base.update(feature=tok, layer=str(self.n_layers + 1), ctx_idx=self.n_pos - 1, feature_type="logit",
                        jsNodeId=f"L_{tok}-{self.n_pos - 1}", token_prob=p, is_target_logit=j == 0,
                        clerp=f'Output "{self.logit_token_strs[j]}" (p={p:.3f})')
        return base

    def write_json(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Write :meth:`to_json` atomically to ``path``."""
        return _atomic_write(Path(path), json.dumps(self.to_json(**kwargs), indent=1))

    # ------------------------------------------------------------------ full save / load (no pickle)
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """``graph.safetensors`` (tensors) + ``graph_meta.json`` (strings), both written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(self, k).contiguous() for k in
                   ("prompt_tokens", "features", "activations", "pre_activations", "logit_tokens", "logit_probs",
                    "logit_values", "adjacency")}
        atomic_write(folder / "graph.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        meta = {"token_strs": self.token_strs, "logit_token_strs": self.logit_token_strs, "n_layers": self.n_layers,
                "model_name": self.model_name, "replacement_score": _finite(self.replacement_score),
                "completeness_score": _finite(self.completeness_score), "live": list(self.live)}
        _atomic_write(folder / "graph_meta.json", json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> AttributionGraph:
        folder = Path(folder)
        t = load_file(str(folder / "graph.safetensors"))
        meta = json.loads((folder / "graph_meta.json").read_text())
        return cls(token_strs=meta["token_strs"], logit_token_strs=meta["logit_token_strs"],
                   n_layers=meta["n_layers"], model_name=meta["model_name"], live=tuple(meta.get("live", ())), **t)

    def _repr_html_(self) -> str:
        """The web UI's graph viewer, inline (:func:`mechscope.display.graph_view` on the pruned :meth:`to_json`)."""
        from ..display import graph_view

        return graph_view(self.to_json(), title=f"attribution graph {self.model_name}".strip()).html()


def _finite(x: float | None) -> float | None:
    """JSON has no NaN: a score without a value (a graph without edges) is written as null."""
    return None if x is None or x != x else float(x)


def _atomic_write(path: Path, text: str) -> Path:
    return atomic_write_text(path, text, fsync=True)


# ---------------------------------------------------------------------------------------------------- supernodes
def feature_supernodes(graph: AttributionGraph, mask: Tensor | None = None, min_size: int = 2) -> list[list[str]]:
    """Group feature nodes of the same (layer, index) at different positions: ``[[name, node_id, ...], ...]``."""
    groups: dict[tuple[int, int], list[str]] = {}
    for i in range(graph.n_features):
        if mask is not None and not bool(mask[i]):
            continue
        layer, _, idx = graph.features[i].tolist()
        groups.setdefault((layer, idx), []).append(graph.node_id(i))
    return [[f"L{l}/{f}", *ids] for (l, f), ids in sorted(groups.items()) if len(ids) >= min_size]


def merge_supernodes(graph: AttributionGraph, supernodes: list[list[str]]) -> tuple[list[str], Tensor]:
    """Collapse groups into single nodes: ``(names, adjacency)`` where grouped edges are summed.

    Summing is exact for sources (effects add) and gives the effect on the sum of the members' values for targets.
    Nodes in no group stay as they are (named by node id).
    """
    ids = graph.node_ids()
    where = {nid: i for i, nid in enumerate(ids)}
    owner = list(range(graph.n_nodes))
    names = list(ids)
    for group in supernodes:
        name, members = group[0], group[1:]
        unknown = [m for m in members if m not in where]
        if unknown:
            raise ValueError(f"supernode {name!r} names nodes not in the graph: {unknown[:5]}")
        names.append(name)
        for m in members:
            owner[where[m]] = len(names) - 1
    used = sorted(set(owner))
    remap = {o: k for k, o in enumerate(used)}
    P = torch.zeros(len(used), graph.n_nodes)
    for i, o in enumerate(owner):
        P[remap[o], i] = 1.0
    return [names[o] for o in used], P @ graph.adjacency @ P.T
