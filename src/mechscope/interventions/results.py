"""Labelled results: a tensor with axis labels, a metric name, and a heatmap plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jaxtyping import Float
from torch import Tensor


@dataclass
class PatchResult:
    """A patching (or attribution) sweep: ``values[row, col]`` is the metric with that cell patched.

    ``clean`` / ``corrupted`` are the metric without any patch on the clean and corrupted inputs (None where not
    measured, e.g. for attribution estimates, whose values are predicted *changes* of the metric).
    """

    values: Float[Tensor, "rows cols"]
    row_labels: list[str]
    col_labels: list[str]
    metric_name: str
    clean: float | None = None
    corrupted: float | None = None
    title: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or tuple(self.values.shape) != (len(self.row_labels), len(self.col_labels)):
            raise ValueError(f"values of shape {tuple(self.values.shape)} do not match "
                             f"{len(self.row_labels)} row and {len(self.col_labels)} column labels")

    def normalized(self) -> Float[Tensor, "rows cols"]:
        """``(value - corrupted) / (clean - corrupted)``: 0 = no recovery, 1 = the clean metric restored."""
        if self.clean is None or self.corrupted is None:
            raise ValueError("normalising needs the clean and corrupted metric; this result has none")
        return (self.values - self.corrupted) / (self.clean - self.corrupted)

    def delta(self) -> Float[Tensor, "rows cols"]:
        """Change of the metric caused by each patch (``value - corrupted``)."""
        if self.corrupted is None:
            raise ValueError("this result holds changes already (no corrupted baseline)")
        return self.values - self.corrupted

    def argmax(self) -> tuple[str, str]:
        """Labels of the cell with the largest value."""
        i = int(self.values.argmax())
        r, c = divmod(i, self.values.shape[1])
        return self.row_labels[r], self.col_labels[c]

    def to_markdown(self, fmt: str = "{:.3f}") -> str:
        head = "| | " + " | ".join(self.col_labels) + " |"
        sep = "|---" * (len(self.col_labels) + 1) + "|"
        rows = [f"| {r} | " + " | ".join(fmt.format(float(v)) for v in row) + " |"
                for r, row in zip(self.row_labels, self.values)]
        return "\n".join([head, sep, *rows])

    def plot(self, path: str | Path | None = None, *, normalized: bool = False, title: str | None = None):
        """A heatmap Figure (rows × cols); saved as PNG when ``path`` is given."""
        from ..display.figures import heatmap

        values = self.normalized() if normalized else self.values
        label = f"{self.metric_name} (normalised)" if normalized else self.metric_name
        return heatmap(values, self.row_labels, self.col_labels, title=title or self.title or label,
                       colorbar_label=label, path=path)


    def view(self, *, normalized: bool | None = None):
        """An interactive heatmap (:mod:`mechscope.display`), normalised when the clean and corrupted metrics are
        known (unless ``normalized=False``); an explicit empty view when no cell was patched."""
        from .. import display

        title = self.title or f"patching: {self.metric_name}"
        if self.values.numel() == 0:
            return display.empty(title, "no cells were patched (empty result)")
        norm = (self.clean is not None and self.corrupted is not None and self.clean != self.corrupted
                if normalized is None else normalized)
        values = self.normalized() if norm else self.values
        name = f"{self.metric_name} (normalised)" if norm else self.metric_name
        hm = display.heatmap(values, self.row_labels, self.col_labels, title=title, value_name=name)
        summary = [("clean " + self.metric_name, self.clean), ("corrupted " + self.metric_name, self.corrupted)]
        summary = [(k, v) for k, v in summary if v is not None] + hm.summary
        return display.panel(title, [hm], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def correlation(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two tensors of the same number of elements."""
    x, y = a.flatten().double(), b.flatten().double()
    if x.numel() != y.numel():
        raise ValueError(f"cannot correlate {x.numel()} values with {y.numel()}")
    x, y = x - x.mean(), y - y.mean()
    denom = (x.norm() * y.norm()).clamp_min(1e-30)
    return float((x * y).sum() / denom)
