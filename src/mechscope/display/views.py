"""HTML views: self-contained snippets for notebooks (``_repr_html_``), reports and files.

A :class:`View` is a JSON spec (``{"kind": "heatmap", ...}``) drawn in the browser by the web UI's own scripts
(:mod:`.assets`), plus a small static summary in plain HTML that shows where scripts do not run (GitHub's notebook
preview, an untrusted notebook). The builders below know no mechscope result type: they take tensors, lists and
dicts, and every result class builds its ``_repr_html_`` from them.

    >>> from mechscope import display
    >>> display.heatmap(values, rows, cols, title="patching", value_name="logit diff")   # in a notebook cell
    >>> display.panel("Result", [view1, view2], summary=[("max", 0.93)]).save("view.html")
"""

from __future__ import annotations

import html
import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from . import assets

MAX_CELLS = 250_000
"""Largest number of values one view carries (a heatmap of 500 × 500); more raises instead of freezing a page."""


def number(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe float with ``digits`` significant digits (None for NaN / inf / None)."""
    if x is None:
        return None
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def _tolist(values: Any) -> Any:
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().tolist()
    elif hasattr(values, "tolist"):
        values = values.tolist()
    return values


def numbers(values: Any) -> Any:
    """Nested lists of JSON-safe floats from a tensor, array or nested sequence."""
    values = _tolist(values)
    if isinstance(values, (list, tuple)):
        return [numbers(v) for v in values]
    return number(values)


def _count(values: Any) -> int:
    return sum(_count(v) for v in values) if isinstance(values, list) else 1


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return number(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    return obj


def esc(text: Any) -> str:
    return html.escape(str(text))


def fmt(x: Any) -> str:
    """A number for the static summary: 4 significant digits; other values as text."""
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, (int, float)):
        v = float(x)
        if not math.isfinite(v):
            return str(v)
        return str(x) if isinstance(x, int) else f"{v:.4g}"
    return str(x)


@dataclass
class View:
    """One view: a JSON spec for the browser and a static HTML summary. Display it in a notebook as it is."""

    spec: dict[str, Any]
    """``{"kind": ..., "title": ..., ...}``, drawn by ``embed.js``."""
    summary: list[tuple[str, Any]] = field(default_factory=list)
    """Headline numbers, shown statically (no script needed)."""

    @property
    def title(self) -> str:
        return str(self.spec.get("title") or "")

    @property
    def empty(self) -> bool:
        return self.spec.get("kind") == "empty"

    def static_html(self) -> str:
        """The no-script summary: title, headline numbers (or why the view is empty)."""
        rows = "".join(f"<tr><th style='text-align:left;padding:1px 10px 1px 0;color:#6b7280;font-weight:600'>"
                       f"{esc(k)}</th><td style='padding:1px 0'>{esc(fmt(v))}</td></tr>" for k, v in self.summary)
        reason = f"<p style='color:#6b7280;margin:4px 0'>{esc(self.spec['reason'])}</p>" if self.empty else ""
        return (f"<div style='font:13px system-ui,sans-serif;color:#1d2330;border:1px solid #d9dde5;"
                f"border-radius:8px;padding:8px 12px;background:#fff'>"
                f"<b>{esc(self.title or 'mechscope view')}</b>{reason}"
                + (f"<table style='border-collapse:collapse;margin-top:4px'>{rows}</table>" if rows else "")
                + "</div>")

    def html(self) -> str:
        """The snippet: a host element holding the static summary, the spec, and the inlined scripts."""
        uid = uuid.uuid4().hex[:12]
        host, data = f"ms-view-{uid}", f"ms-data-{uid}"
        name, script = assets.bundle()
        payload = json.dumps(_json_safe(self.spec), allow_nan=False).replace("</", "<\\/")
        return (f'<div class="mechscope-view" id="{host}">{self.static_html()}</div>'
                f'<script type="application/json" id="{data}">{payload}</script>'
                f"<script>{script}\nwindow.{name}.mount({json.dumps(host)}, {json.dumps(data)});</script>")

    def _repr_html_(self) -> str:
        return self.html()

    def page(self) -> str:
        """A complete HTML document holding this view."""
        return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
                f"</head><body style='margin:16px;background:#f6f7f9'>{self.html()}</body></html>")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`page` to ``path`` (a standalone file that opens offline)."""
        return atomic_write_text(path, self.page())


def _check_size(values: Any, what: str) -> None:
    n = _count(values)
    if n > MAX_CELLS:
        raise ValueError(f"{what} holds {n} values, more than one view shows ({MAX_CELLS}); slice it first")


def empty(title: str, reason: str) -> View:
    """An explicit empty view: says what is empty and why, instead of raising in a notebook."""
    return View({"kind": "empty", "title": title, "reason": reason})


def heatmap(values: Any, row_labels: Sequence[Any], col_labels: Sequence[Any], *, title: str = "",
            value_name: str = "value", diverging: bool = True, cell_text: Sequence[Sequence[str]] | None = None
            ) -> View:
    """Rows × columns, one coloured cell per value (hover for it); diverging colours centred on zero."""
    vals = numbers(values)
    if not isinstance(vals, list) or (vals and not isinstance(vals[0], list)):
        raise ValueError("heatmap needs a 2-D tensor or nested list (rows × columns)")
    if not vals or not vals[0]:
        return empty(title or "heatmap", "no values")
    if len(vals) != len(row_labels) or any(len(r) != len(col_labels) for r in vals):
        raise ValueError(f"heatmap values of {len(vals)} rows do not match {len(row_labels)} row and "
                         f"{len(col_labels)} column labels")
    _check_size(vals, "heatmap")
    flat = [v for r in vals for v in r if v is not None]
    spec: dict[str, Any] = {"kind": "heatmap", "title": title, "value_name": value_name, "diverging": diverging,
                            "row_labels": [str(r) for r in row_labels], "col_labels": [str(c) for c in col_labels],
                            "values": vals}
    if cell_text is not None:
        spec["cell_text"] = [[str(t) for t in row] for row in cell_text]
    summary: list[tuple[str, Any]] = [("shape", f"{len(vals)} × {len(vals[0])}")]
    if flat:
        i = max(range(len(flat)), key=lambda j: flat[j])
        cells = [(r, c) for r in range(len(vals)) for c in range(len(vals[0])) if vals[r][c] is not None]
        r, c = cells[i]
        summary += [(f"max {value_name}", flat[i]), ("at", f"{row_labels[r]} × {col_labels[c]}"),
                    (f"min {value_name}", min(flat))]
    return View(spec, summary)


def line_plot(series: Mapping[str, Any], x_labels: Sequence[Any], *, title: str = "", y_label: str = "") -> View:
    """One line per named series over shared x labels; hover a point for its value."""
    data = [{"name": str(k), "values": numbers(v)} for k, v in series.items()]
    if not x_labels or not data or all(not s["values"] for s in data):
        return empty(title or "line plot", "no values")
    for s in data:
        if len(s["values"]) != len(x_labels):
            raise ValueError(f"series {s['name']!r} has {len(s['values'])} values for {len(x_labels)} x labels")
    summary = []
    for s in data:
        finite = [(v, i) for i, v in enumerate(s["values"]) if v is not None]
        if finite:
            v, i = max(finite)
            summary.append((f"{s['name']}: max", f"{fmt(v)} at {x_labels[i]}"))
    return View({"kind": "lines", "title": title, "y_label": y_label, "x_labels": [str(x) for x in x_labels],
                 "series": data}, summary)


def bar_chart(labels: Sequence[Any], values: Any, *, title: str = "", value_name: str = "value") -> View:
    """Horizontal bars from zero (blue positive, red negative); hover a bar for its value."""
    vals = numbers(values)
    if not labels:
        return empty(title or "bar chart", "no values")
    if len(vals) != len(labels):
        raise ValueError(f"{len(vals)} values for {len(labels)} labels")
    return View({"kind": "bars", "title": title, "value_name": value_name, "labels": [str(x) for x in labels],
                 "values": vals}, [(str(k), v) for k, v in list(zip(labels, vals))[:8]])


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "") -> View:
    """A plain table; numeric cells show 4 significant digits and their full value on hover."""
    body = [[number(c) if isinstance(c, float) else c for c in r] for r in rows]
    if not body:
        return empty(title or "table", "no rows")
    bad = [i for i, r in enumerate(body) if len(r) != len(columns)]
    if bad:
        raise ValueError(f"row {bad[0]} has {len(body[bad[0]])} cells for {len(columns)} columns")
    _check_size(body, "table")
    summary = [(str(r[0]), ", ".join(fmt(c) for c in r[1:])) for r in body[:8]]
    return View({"kind": "table", "title": title, "columns": [str(c) for c in columns], "rows": body}, summary)


def text(body: str, *, title: str = "") -> View:
    """Preformatted text (a generation, a log excerpt)."""
    return View({"kind": "text", "title": title, "text": str(body)})


def key_values(pairs: Sequence[tuple[str, Any]], *, title: str = "") -> View:
    """Labelled values, one per line."""
    pairs = [(str(k), number(v) if isinstance(v, float) else v) for k, v in pairs]
    if not pairs:
        return empty(title or "values", "nothing to show")
    return View({"kind": "kv", "title": title, "pairs": pairs}, list(pairs))


def panel(title: str, children: Sequence[View], *, summary: Sequence[tuple[str, Any]] = ()) -> View:
    """Several views under one heading, with headline numbers on top (shown statically too)."""
    pairs = [(str(k), number(v) if isinstance(v, float) else v) for k, v in summary]
    return View({"kind": "panel", "title": title, "summary": pairs, "children": [c.spec for c in children]},
                pairs or [kv for c in children for kv in c.summary][:10])


def feature_card(card: Mapping[str, Any], *, title: str | None = None) -> View:
    """The web UI's feature card from a card dict (the ``/api/runs/{run}/features/{f}`` ``card`` layout:
    ``feature``, ``frequency``, ``max_act``, ``mean_active``, ``n_active``, ``hist``, ``hist_edges``,
    ``explanation``, ``promoted`` / ``suppressed`` ``[{token, value}]``, ``neighbours``, ``top_examples``,
    ``quantile_examples``)."""
    c = _json_safe(dict(card))
    name = title or f"feature {c.get('feature')}"
    summary = [("frequency", c.get("frequency")), ("max activation", c.get("max_act")),
               ("explanation", c.get("explanation") or "–"),
               ("promotes", ", ".join(repr(t["token"]) for t in (c.get("promoted") or [])[:6]) or "–")]
    return View({"kind": "card", "title": name, "card": c}, summary)


def graph_view(graph: Mapping[str, Any], *, cards: Mapping[str, Mapping[str, Any]] | None = None,
               title: str = "") -> View:
    """The web UI's attribution-graph viewer on a graph JSON (``metadata``, ``nodes``, ``links``); ``cards`` maps
    feature node ids to card dicts shown when a node is clicked."""
    g = _json_safe(dict(graph))
    nodes, links = g.get("nodes") or [], g.get("links") or []
    if not nodes:
        return empty(title or "attribution graph", "the graph has no nodes")
    meta = g.get("metadata") or {}
    summary = [("prompt", meta.get("prompt", "")), ("nodes", len(nodes)), ("links", len(links))]
    summary += [(k.replace("_", " "), meta[k]) for k in ("replacement_score", "completeness_score") if k in meta]
    return View({"kind": "graph", "title": title, "graph": g, "cards": _json_safe(dict(cards or {}))}, summary)


def attention(patterns: Any, tokens: Sequence[str], *, head_labels: Sequence[str] | None = None,
              title: str = "") -> View:
    """Per-head attention viewer from ``patterns[head, query, key]`` over ``tokens``."""
    pats = numbers(patterns)
    if not pats or not tokens:
        return empty(title or "attention", "no heads or no tokens")
    n = len(tokens)
    if any(len(h) != n or any(len(row) != n for row in h) for h in pats):
        raise ValueError(f"attention patterns must be (heads, {n}, {n}) for {n} tokens")
    _check_size(pats, "attention pattern")
    heads = [str(h) for h in (head_labels or [f"H{i}" for i in range(len(pats))])]
    if len(heads) != len(pats):
        raise ValueError(f"{len(heads)} head labels for {len(pats)} heads")
    summary = []
    for h, p in zip(heads, pats):
        prev = [p[q][q - 1] for q in range(1, n)]
        summary.append((f"{h}: mean attention to previous token", sum(prev) / len(prev) if prev else None))
    return View({"kind": "attention", "title": title, "tokens": [str(t) for t in tokens], "heads": heads,
                 "patterns": pats}, summary[:8])
