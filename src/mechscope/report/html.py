"""A self-contained HTML report: sections of text, tables and figures (PNG inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_write_text

if TYPE_CHECKING:
    from ..display import View

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;
color:#1d2330;line-height:1.5}
h1{border-bottom:2px solid #3a6ea5;padding-bottom:.3rem}h2{color:#3a6ea5;margin-top:2.2rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}td,th{border:1px solid #ccd;padding:.25rem .6rem}
th{background:#eef2f8}figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #dde}
figcaption{font-size:.88rem;color:#556}.note{color:#556;font-size:.9rem}code{background:#f3f4f7;padding:0 .2rem}
nav a{margin-right:1rem}
"""


@dataclass
class Section:
    title: str
    anchor: str
    parts: list[str] = field(default_factory=list)

    def text(self, paragraph_html: str) -> Section:
        """Add a paragraph (trusted HTML written by mechscope; escape user text with :func:`esc`)."""
        self.parts.append(f"<p>{paragraph_html}</p>")
        return self

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Section:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")
        return self

    def figure(self, fig, caption: str = "") -> Section:
        """Inline a matplotlib figure as PNG (and close it)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.image(buf.getvalue(), caption)

    def image(self, png: bytes, caption: str = "") -> Section:
        """Inline PNG bytes (e.g. a figure a command already wrote to disk)."""
        data = base64.b64encode(png).decode()
        self.parts.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                          f"<figcaption>{esc(caption)}</figcaption></figure>")
        return self

    def view(self, view: View, caption: str = "") -> Section:
        """Embed an interactive :mod:`mechscope.display` view (self-contained: the report stays one offline file)."""
        self.parts.append(f"<figure>{view.html()}<figcaption>{esc(caption)}</figcaption></figure>")
        return self

    def html(self) -> str:
        return f'<section id="{self.anchor}"><h2>{esc(self.title)}</h2>{"".join(self.parts)}</section>'


def esc(text: object) -> str:
    return html.escape(str(text))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class Report:
    title: str
    intro: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        s = Section(title, f"s{len(self.sections) + 1}")
        self.sections.append(s)
        return s

    def render(self) -> str:
        nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in self.sections)
        body = "".join(s.html() for s in self.sections)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{esc(self.title)}</h1><p class='note'>{self.intro}</p>"
                f"<nav>{nav}</nav>{body}</body></html>")

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file, then rename)."""
        return atomic_write_text(path, self.render())
