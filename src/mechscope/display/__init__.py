"""Rendering primitives shared by notebook views, the HTML report and the web UI; they know no result type.

- :mod:`.views` — self-contained HTML views (heatmap, line plot, bar chart, table, feature card, attribution-graph
  viewer, per-head attention viewer, panels, explicit empty views). Each is a :class:`View` that a notebook shows
  as it is (``_repr_html_``) and that :meth:`View.save` writes as a standalone page. They are drawn by the web
  UI's own scripts, inlined (:mod:`.assets`): nothing is fetched from the network.
- :mod:`.figures` — static matplotlib figures (PNG) for files the CLI writes (import it explicitly; it loads
  matplotlib).

Every result class's ``_repr_html_`` is built from these. This package imports no other mechscope package.
"""

from .assets import AssetError
from .views import (
                    View,
                    attention,
                    bar_chart,
                    empty,
                    feature_card,
                    graph_view,
                    heatmap,
                    key_values,
                    line_plot,
                    number,
                    numbers,
                    panel,
                    table,
                    text,
)

__all__ = ["AssetError", "View", "attention", "bar_chart", "empty", "feature_card", "graph_view", "heatmap",
           "key_values", "line_plot", "number", "numbers", "panel", "table", "text"]
