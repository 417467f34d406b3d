"""The JavaScript and CSS every HTML view is drawn with: the web UI's own static files, inlined.

The web UI (``mechscope serve``) loads ``util.js``, ``heatmap.js``, ``graph.js``, ``card.js``, ``plots.js`` and
``style.css`` from its static folder; a notebook or report view inlines the same files (plus ``attention.js``,
``embed.js`` and ``views.css``) into one script, so it looks and behaves like the web UI and fetches nothing.
The files are package data read from disk: no Python module of the server is imported.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent.parent / "server" / "static"
"""Where the shared JS/CSS live (installed with the package as data of ``mechscope.server``)."""

SCRIPTS = ("util.js", "heatmap.js", "graph.js", "card.js", "plots.js", "attention.js", "embed.js")
"""Inlined in this order (later files use the helpers of earlier ones)."""
STYLES = ("style.css", "views.css")


class AssetError(RuntimeError):
    """A shared static file is missing from the installation."""


def _read(name: str) -> str:
    path = STATIC_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise AssetError(f"mechscope display asset {path} cannot be read ({e}); the installation is incomplete "
                         f"(package data of mechscope.server is missing)") from e


@functools.lru_cache(maxsize=1)
def stylesheet() -> str:
    """The web UI's stylesheet plus the views' own rules; ``:root`` variables also apply to a shadow ``:host``."""
    return "\n".join(_read(n) for n in STYLES).replace(":root", ":root, :host")


@functools.lru_cache(maxsize=1)
def bundle() -> tuple[str, str]:
    """``(global_name, script)``: a script defining ``window[global_name].mount(hostId, dataId)`` once per page.

    The files are wrapped in one function so their top-level names stay private (a notebook shows many views,
    each carrying the bundle; only the first one on a page evaluates it). The name carries a hash of the
    contents, so a page never mixes two versions.
    """
    sources = [_read(n) for n in SCRIPTS]
    css = stylesheet()
    digest = hashlib.sha256("\0".join([*sources, css]).encode()).hexdigest()[:12]
    name = f"__mechscope_display_{digest}"
    body = "\n".join(f"/* --- {n} --- */\n{src}" for n, src in zip(SCRIPTS, sources))
    script = (f"if (!window.{name}) {{ window.{name} = (function () {{\n{body}\n"
              f"const CSS = {json.dumps(css)};\n"
              f"return {{mount: (hostId, dataId) => msMount(hostId, dataId, CSS)}};\n}})(); }}")
    return name, script.replace("</", "<\\/")
