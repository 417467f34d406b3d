"""Kept for imports written before :mod:`mechscope.display` existed: the figures live in ``display.figures``."""

from ..display.figures import heatmap, line_plot
from ..display.figures import save_figure as _save

__all__ = ["heatmap", "line_plot", "_save"]
