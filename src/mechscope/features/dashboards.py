"""Self-contained HTML dashboards: one page per feature plus an index, from a :class:`~.db.FeatureDB`.

A feature page shows its statistics, an inline-SVG histogram of non-zero activations, the top and quantile-sampled
examples with every token's background coloured by the feature's activation (hover for the value), the tokens it
promotes and suppresses, its input tokens (transcoders), the explanation with its scores, and links to the nearest
features. No external resources: each file opens offline. Files are written atomically.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from pathlib import Path

from ..files import atomic_write_text
from .db import FeatureCard, FeatureDB
from .logits import TokenScore
from .stats import Example

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:1.5rem auto;padding:0 1rem;
color:#1d2330;line-height:1.45}h1{margin:.2rem 0 .6rem}h2{color:#3a6ea5;font-size:1.1rem;margin:1.4rem 0 .5rem}
.stats span{margin-right:1.4rem}.ex{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;
white-space:pre-wrap;border-bottom:1px solid #e3e6ee;padding:.25rem 0}.ex .v{color:#667;margin-right:.8rem;
display:inline-block;width:4.5rem;text-align:right}.tok{border-radius:2px}.tok.peak{outline:1px solid #b33}
table{border-collapse:collapse;font-size:.88rem}td,th{border:1px solid #ccd;padding:.15rem .5rem}th{background:#eef2f8}
.cols{display:flex;gap:2rem;flex-wrap:wrap}.expl{background:#f5f7fb;border-left:3px solid #3a6ea5;padding:.4rem .8rem}
a{color:#3a6ea5}.muted{color:#667;font-size:.85rem}
"""


def esc(text: object) -> str:
    return html.escape(str(text))


def _show(tok: str) -> str:
    return esc(tok.replace("\n", "\u21b5\n").replace("\t", "\u2192"))


def example_html(ex: Example, scale: float) -> str:
    """One example as a line of spans; background alpha = activation / ``scale``, title = the value."""
    strs = ex.str_tokens or [str(t) for t in ex.tokens]
    spans = []
    for i, (tok, a) in enumerate(zip(strs, ex.acts)):
        alpha = max(0.0, min(1.0, a / scale)) if scale > 0 else 0.0
        style = f' style="background:rgba(255,110,0,{alpha:.3f})"' if a > 0 else ""
        peak = " peak" if i == ex.position else ""
        spans.append(f'<span class="tok{peak}"{style} title="{a:.4g}">{_show(tok)}</span>')
    return f'<div class="ex"><span class="v">{ex.activation:.3g}</span>{"".join(spans)}</div>'


def histogram_svg(counts: Sequence[int], edges: Sequence[float], width: int = 520, height: int = 150) -> str:
    """Bars of ``counts`` over log-spaced ``edges``, as inline SVG with a few axis labels."""
    nz = [i for i, c in enumerate(counts) if c > 0]
    if not nz:
        return '<p class="muted">never active</p>'
    lo, hi = max(nz[0] - 1, 0), min(nz[-1] + 2, len(counts))
    shown = counts[lo:hi]
    top = max(shown)
    bw = (width - 40) / len(shown)
    bars = []
    for i, c in enumerate(shown):
        h = (height - 30) * c / top
        bars.append(f'<rect x="{40 + i * bw:.1f}" y="{height - 20 - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="#3a6ea5"><title>{edges[lo + i]:.3g}-{edges[lo + i + 1]:.3g}: {c}'
                    f'</title></rect>')
    ticks = []
    for i in range(0, len(shown) + 1, max(1, len(shown) // 5)):
        ticks.append(f'<text x="{40 + i * bw:.1f}" y="{height - 5}" font-size="10" text-anchor="middle">'
                     f'{edges[lo + i]:.2g}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="activation histogram"><text x="0" y="12" font-size="10">{top}</text>'
            f'<line x1="40" y1="{height - 20}" x2="{width}" y2="{height - 20}" stroke="#889"/>'
            f'{"".join(bars)}{"".join(ticks)}</svg>')


def _tokens_table(title: str, items: list[TokenScore]) -> str:
    if not items:
        return ""
    rows = "".join(f"<tr><td>{_show(t.token)!s}</td><td>{t.value:+.3f}</td></tr>" for t in items)
    return f"<div><h2>{esc(title)}</h2><table><tr><th>token</th><th>value</th></tr>{rows}</table></div>"


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def feature_html(card: FeatureCard, meta: dict | None = None) -> str:
    """The dashboard page of one feature."""
    meta = meta or {}
    where = ", ".join(meta.get("hook_names") or [])
    scale = card.max_act if card.max_act > 0 else 1.0
    parts = [f'<p class="muted"><a href="index.html">index</a> · {esc(meta.get("model", ""))} · {esc(where)}</p>',
             f"<h1>Feature {card.feature}</h1>",
             f'<p class="stats"><span>frequency <b>{card.frequency:.3%}</b></span>'
             f"<span>max <b>{card.max_act:.4g}</b></span><span>mean (active) <b>{card.mean_active:.4g}</b></span>"
             f"<span>active on <b>{card.n_active}</b> tokens</span></p>"]
    if card.explanation:
        scores = " · ".join(f"{esc(k)}: " + ", ".join(f"{esc(n)} {v:.2f}" for n, v in s.items()
                                                         if isinstance(v, (int, float)))
                            for k, s in card.scores.items() if isinstance(s, dict))
        status = card.explanation_status
        note = f" (status: {esc(status)})" if status and status != "ok" else ""
        parts.append(f'<div class="expl"><b>Explanation:</b> {esc(card.explanation)}'
                     f'<br><span class="muted">{scores}{note}</span></div>')
    elif card.explanation_status:
        parts.append(f'<div class="expl muted"><b>Explanation:</b> none usable from the model '
                     f'(status: {esc(card.explanation_status)})</div>')
    parts.append("<h2>Top activations</h2>" + ("".join(example_html(e, scale) for e in card.top_examples)
                                              or '<p class="muted">no activating examples</p>'))
    for q in reversed(range(len(card.quantile_examples))):
        group = card.quantile_examples[q]
        if group:
            n = len(card.quantile_examples)
            parts.append(f"<h2>Activations {q / n:.0%}-{(q + 1) / n:.0%} of max</h2>"
                         + "".join(example_html(e, scale) for e in group))
    parts.append("<h2>Activation histogram (non-zero)</h2>" + histogram_svg(card.hist, card.hist_edges))
    parts.append('<div class="cols">' + _tokens_table("Promoted tokens", card.promoted)
                 + _tokens_table("Suppressed tokens", card.suppressed)
                 + _tokens_table("Input tokens (de-embedding)", card.input_tokens) + "</div>")
    if card.neighbours:
        links = " ".join(f'<a href="feature_{o}.html">{o}</a> <span class="muted">({c:.2f})</span>'
                         for o, c in card.neighbours)
        parts.append(f"<h2>Nearest features (decoder cosine)</h2><p>{links}</p>")
    return _page(f"Feature {card.feature}", "".join(parts))


_write_atomic = atomic_write_text


def write_dashboards(db: FeatureDB | str | os.PathLike[str], out_dir: str | os.PathLike[str],
                     features: Sequence[int] | None = None, min_frequency: float = 0.0) -> Path:
    """Write ``feature_<i>.html`` for each feature (default: every feature active more often than
    ``min_frequency``, so dead features get no page) and ``index.html``; returns the index path."""
    db = db if isinstance(db, FeatureDB) else FeatureDB(db)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [db.check(f) for f in features] if features is not None else [
        f for f, freq in db.by_density(min_frequency, 1.0, limit=db.d_sae) if freq > min_frequency]
    rows = []
    for f in sorted(ids):
        card = db.card(f)
        _write_atomic(out / f"feature_{f}.html", feature_html(card, db.meta))
        top = card.top_examples[0] if card.top_examples else None
        peak = _show((top.str_tokens or [""])[top.position]) if top and top.str_tokens else ""
        rows.append(f'<tr><td><a href="feature_{f}.html">{f}</a></td><td>{card.frequency:.3%}</td>'
                    f"<td>{card.max_act:.3g}</td><td>{peak}</td><td>{esc(card.explanation or '')}</td></tr>")
    meta = db.meta
    body = (f"<h1>Features</h1><p class=\"muted\">{esc(meta.get('model', ''))} · "
            f"{esc(', '.join(meta.get('hook_names') or []))} · {meta.get('d_sae')} features · "
            f"{meta.get('n_tokens')} tokens · {len(ids)} pages</p><table><tr><th>feature</th><th>frequency</th>"
            f"<th>max</th><th>top token</th><th>explanation</th></tr>{''.join(rows)}</table>")
    index = out / "index.html"
    _write_atomic(index, _page("Features", body))
    return index


def frequency_label(freq: float) -> str:
    """``1e-3`` -> ``"1 in 1000 tokens"`` (used by the CLI summary)."""
    return "never" if freq <= 0 else f"1 in {math.ceil(1 / freq)} tokens"
