"""Static drawings of attribution graphs and intervention checks for the HTML report (matplotlib, Agg).

The interactive viewer lives in the web UI; this is the picture that goes into a self-contained report: the
pruned graph laid out by (token position, layer), tokens at the bottom, logits at the top, edges coloured by sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..display.figures import save_figure as _save  # noqa: E402

KIND_STYLE = {  # marker, colour, label
    "feature": ("o", "#2b8cbe", "transcoder feature"),
    "error": ("s", "#bbbbbb", "MLP reconstruction error"),
    "token": ("^", "#31a354", "token embedding"),
    "logit": ("D", "#e6550d", "output logit"),
}


def _layout(graph, nodes: Sequence[int]) -> dict[int, tuple[float, float]]:
    """(x, y) per node: x = position (features of one cell spread sideways), y = layer; tokens -1, logits L."""
    cells: dict[tuple[int, int], list[int]] = {}
    for i in nodes:
        kind = graph.node_kind(i)
        if kind == "feature":
            layer, pos, _ = graph.features[i].tolist()
        elif kind == "error":
            layer, pos = divmod(i - graph.error_offset, graph.n_pos)
        elif kind == "token":
            layer, pos = -1, i - graph.token_offset
        else:
            layer, pos = graph.n_layers, graph.n_pos - 1
        cells.setdefault((layer, pos), []).append(i)
    xy = {}
    for (layer, pos), members in cells.items():
        n = len(members)
        for j, i in enumerate(members):
            offset = 0.0 if n == 1 else (j / (n - 1) - 0.5) * 0.7
            xy[i] = (pos + offset, float(layer))
    return xy


def graph_figure(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98, max_edges: int = 300,
                 title: str = "", path: str | Path | None = None) -> Figure:
    """The pruned attribution graph: nodes kept by pruning, their strongest ``max_edges`` kept edges."""
    pr = graph.prune(node_threshold, edge_threshold)
    nodes = pr.node_mask.nonzero(as_tuple=True)[0].tolist()
    xy = _layout(graph, nodes)
    tgt, src = pr.edge_mask.nonzero(as_tuple=True)
    w = graph.adjacency[tgt, src].float()  # (E,)
    order = w.abs().argsort(descending=True)[:max_edges]
    fig = Figure(figsize=(max(6.0, 0.9 * graph.n_pos + 2), 7))
    ax = fig.add_subplot()
    wmax = float(w.abs().max()) if len(w) else 1.0
    for e in reversed(order.tolist()):  # strongest edges drawn last (on top)
        s, t, val = int(src[e]), int(tgt[e]), float(w[e])
        (x0, y0), (x1, y1) = xy[s], xy[t]
        strength = abs(val) / wmax
        ax.plot([x0, x1], [y0, y1], color="#3182bd" if val > 0 else "#de2d26", lw=0.3 + 2.5 * strength,
                alpha=0.15 + 0.6 * strength, zorder=1)
    for kind, (marker, colour, label) in KIND_STYLE.items():
        members = [i for i in nodes if graph.node_kind(i) == kind]
        if members:
            ax.scatter([xy[i][0] for i in members], [xy[i][1] for i in members], marker=marker, s=36, c=colour,
                       edgecolors="black", linewidths=0.4, label=f"{label} ({len(members)})", zorder=2)
    ax.set_xticks(range(graph.n_pos), [repr(t)[1:-1][:12] for t in graph.token_strs], rotation=60, fontsize=8,
                  ha="right")
    ax.set_yticks([-1, *range(0, graph.n_layers, max(1, graph.n_layers // 10)), graph.n_layers],
                  ["emb", *map(str, range(0, graph.n_layers, max(1, graph.n_layers // 10))), "logit"], fontsize=8)
    ax.set_ylabel("layer")
    ax.set_ylim(-1.6, graph.n_layers + 0.6)
    ax.set_title(title or f"attribution graph: {len(nodes)} nodes, {int(pr.edge_mask.sum())} edges "
                          f"(blue excites, red inhibits)")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
    ax.grid(alpha=0.15)
    return _save(fig, path)


def scatter_figure(x: Sequence[float] | torch.Tensor, y: Sequence[float] | torch.Tensor, *, xlabel: str,
                   ylabel: str, title: str = "", path: str | Path | None = None) -> Figure:
    """Predicted vs measured: points and the y = x line."""
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=22, c="#2b8cbe", edgecolors="black", linewidths=0.4)
    if xs:
        lo, hi = min(xs + ys), max(xs + ys)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="y = x")
        ax.legend(fontsize=7)
    ax.axhline(0, color="black", lw=0.4)
    ax.axvline(0, color="black", lw=0.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)
