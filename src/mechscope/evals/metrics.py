"""Reconstruction metrics of a dictionary on activations: L0, MSE, FVU, cosine, shrinkage, feature density.

All statistics are accumulated over batches by :class:`ReconstructionStats` (sums, not means of means), so the
numbers do not depend on the evaluation batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from ..dictionaries import Dictionary

#: log10 firing-frequency bin edges of the density histogram (latents that never fire are counted separately).
DENSITY_BINS = [-8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0]


@dataclass
class Reconstruction:
    """Reconstruction quality over the evaluated rows."""

    rows: int
    """Activation rows evaluated."""
    l0: float
    """Mean number of active latents per row."""
    mse: float
    """Mean over rows of the squared error summed over the output dimensions."""
    fvu: float
    """Fraction of variance unexplained: total squared error / total variance around the mean row."""
    cosine: float
    """Mean cosine similarity between reconstruction and target."""
    shrinkage: float
    """Mean ||x_hat|| / ||x||: below 1 when the sparsity penalty shrinks reconstructions."""
    dead_fraction: float
    """Latents that never fired on the evaluated rows."""
    dense_fraction: float
    """Latents firing on more than ``dense_threshold`` of the rows."""
    density_histogram: dict[str, list[float]] = field(default_factory=dict)
    """``{"bin_edges_log10": [...], "counts": [...]}``: latents per log10 firing-frequency bin."""
    frequencies: list[float] = field(default_factory=list, repr=False)
    """Firing frequency of every latent (not written to eval.json)."""

    def density_view(self, title: str = "latents by log10 firing frequency"):
        """The density histogram as bars (``never`` first; hover a bar for its count); empty when not computed."""
        from .. import display

        h = self.density_histogram
        if not h or not h.get("bin_edges_log10"):
            return display.empty(title, "no density histogram was computed")
        edges = h["bin_edges_log10"]
        labels = ["never"] + [f"1e{a:.1f}..1e{b:.1f}" for a, b in zip(edges, edges[1:])]
        return display.bar_chart(labels, [*h.get("never_fired", [0]), *h["counts"]], value_name="latents",
                                 title=title)

    def headline(self) -> list[tuple[str, float | int]]:
        """``(name, value)`` of the headline numbers, in display order."""
        return [("rows", self.rows), ("L0", self.l0), ("MSE", self.mse), ("FVU", self.fvu), ("cosine", self.cosine),
                ("shrinkage", self.shrinkage), ("dead fraction", self.dead_fraction),
                ("dense fraction", self.dense_fraction)]

    def view(self):
        """Interactive view (:mod:`mechscope.display`): headline numbers and the density histogram."""
        from .. import display

        if self.rows == 0:
            return display.empty("reconstruction", "no activation rows were evaluated")
        return display.panel("reconstruction", [self.density_view()], summary=self.headline())

    def _repr_html_(self) -> str:
        return self.view().html()


class ReconstructionStats:
    """Accumulates sums over batches; :meth:`result` turns them into a :class:`Reconstruction`."""

    def __init__(self, d: Dictionary, dense_threshold: float = 0.1):
        self.d, self.dense_threshold = d, dense_threshold
        self.rows = 0
        self.l0 = self.sq_err = self.cos = self.shrink = 0.0
        self.sum: Tensor | None = None
        self.sum_sq: Tensor | None = None
        self.fired = torch.zeros(d.latent_shape(), dtype=torch.float64)

    @torch.no_grad()
    def update(self, x: Float[Tensor, " n *d_in"], target: Float[Tensor, " n *d_out"] | None = None) -> None:
        target = x if target is None else target
        out = self.d(x)
        tgt = target.to(out.reconstruction.dtype).flatten(1).double()  # (N, D)
        rec = out.reconstruction.flatten(1).double()  # (N, D)
        acts = (out.feature_acts != 0).flatten(1)  # (N, S)
        self.rows += tgt.shape[0]
        self.l0 += float(acts.sum())
        self.sq_err += float((rec - tgt).pow(2).sum())
        self.cos += float(torch.nn.functional.cosine_similarity(rec, tgt, dim=-1).sum())
        self.shrink += float((rec.norm(dim=-1) / tgt.norm(dim=-1).clamp_min(1e-12)).sum())
        s, sq = tgt.sum(0), tgt.pow(2).sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.sum_sq = sq if self.sum_sq is None else self.sum_sq + sq
        self.fired += acts.sum(0).reshape(self.fired.shape).double().cpu()

    def result(self) -> Reconstruction:
        if self.rows == 0:
            raise ValueError("no rows were evaluated")
        n = self.rows
        variance = float((self.sum_sq - self.sum.pow(2) / n).sum())
        freq = (self.fired / n).flatten()
        return Reconstruction(
            rows=n, l0=self.l0 / n, mse=self.sq_err / n, fvu=self.sq_err / max(variance, 1e-30),
            cosine=self.cos / n, shrinkage=self.shrink / n, dead_fraction=float((freq == 0).double().mean()),
            dense_fraction=float((freq > self.dense_threshold).double().mean()),
            density_histogram=density_histogram(freq), frequencies=freq.tolist())


def density_histogram(freq: Tensor) -> dict[str, list[float]]:
    """Latent counts per log10 firing-frequency bin of :data:`DENSITY_BINS`, plus the never-firing count."""
    alive = freq[freq > 0].clamp_min(10 ** DENSITY_BINS[0])
    counts = torch.histogram(alive.log10().float(), bins=torch.tensor(DENSITY_BINS))[0] if alive.numel() else \
        torch.zeros(len(DENSITY_BINS) - 1)
    return {"bin_edges_log10": list(DENSITY_BINS), "counts": [int(c) for c in counts.tolist()],
            "never_fired": [int((freq == 0).sum())]}


@torch.no_grad()
def evaluate_activations(d: Dictionary, x: Tensor, target: Tensor | None = None, *, batch_size: int = 4096,
                         dense_threshold: float = 0.1) -> Reconstruction:
    """Reconstruction metrics of ``d`` on rows ``x`` (and ``target`` for transcoders), in batches."""
    stats = ReconstructionStats(d, dense_threshold)
    for i in range(0, x.shape[0], batch_size):
        stats.update(x[i:i + batch_size], None if target is None else target[i:i + batch_size])
    return stats.result()
