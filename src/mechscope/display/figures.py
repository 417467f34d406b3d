"""Static matplotlib figures (Agg backend, no display): heatmaps and per-layer line plots, saved as PNG.

The CLI writes these next to its JSON outputs; the interactive HTML views are in :mod:`.views`. Every function
returns the ``Figure`` and saves a PNG when given ``path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402


def save_figure(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` as PNG at ``path`` (folders created) when a path is given; return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    return fig


def _ticks(labels: Sequence[str], max_ticks: int = 40) -> tuple[list[int], list[str]]:
    step = max(1, len(labels) // max_ticks + (len(labels) % max_ticks > 0))
    idx = list(range(0, len(labels), step))
    return idx, [str(labels[i]) for i in idx]


def heatmap(values: Tensor, row_labels: Sequence[str], col_labels: Sequence[str], *, title: str = "",
            colorbar_label: str = "", diverging: bool = True, path: str | Path | None = None) -> Figure:
    """A labelled heatmap of a 2-D tensor; diverging colours centred on zero unless ``diverging=False``."""
    v = torch.as_tensor(values).detach().float().cpu()
    if v.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D tensor, got shape {tuple(v.shape)}")
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values {tuple(v.shape)} do not match {len(row_labels)} x {len(col_labels)} labels")
    fig = Figure(figsize=(max(4.0, 0.35 * v.shape[1] + 2), max(3.0, 0.25 * v.shape[0] + 1.5)))
    ax = fig.add_subplot()
    if diverging:
        lim = float(v.abs().max()) or 1.0
        im = ax.imshow(v.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    else:
        im = ax.imshow(v.numpy(), cmap="viridis", aspect="auto")
    xi, xl = _ticks(col_labels)
    yi, yl = _ticks(row_labels)
    ax.set_xticks(xi, xl, rotation=90, fontsize=7)
    ax.set_yticks(yi, yl, fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=colorbar_label)
    return save_figure(fig, path)


def line_plot(series: Mapping[str, Sequence[float]], x_labels: Sequence[str], *, title: str = "", ylabel: str = "",
              path: str | Path | None = None) -> Figure:
    """One line per named series over shared x labels (e.g. accuracy or KL per layer)."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    for name, ys in series.items():
        ax.plot(range(len(ys)), [float(y) for y in ys], marker="o", markersize=3, label=name)
    xi, xl = _ticks(x_labels)
    ax.set_xticks(xi, xl, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


__all__ = ["heatmap", "line_plot", "save_figure"]
