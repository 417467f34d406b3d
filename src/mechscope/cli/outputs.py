"""Run-folder writing shared by the analysis subcommands (patch, lens, dla): JSON, PNG figures and an HTML page.

Every file is written to a temporary name in the run folder and moved into place with ``os.replace``, so a reader
(or a crashed run) never sees half a file. Non-finite floats become ``null`` in JSON (strict JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write


def jsonable(x: Any) -> Any:
    """Tensors to nested lists, non-finite floats to None, recursively through dicts, lists and tuples."""
    if isinstance(x, torch.Tensor):
        return jsonable(x.detach().cpu().tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


_atomic = atomic_write


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(jsonable(data), indent=1, ensure_ascii=False, allow_nan=False)
    return _atomic(Path(path), lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def write_png(path: str | Path, fig) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    return _atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def write_page(path: str | Path, title: str, intro: str, figures: Sequence[tuple[Any, str]],
               tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]]]] = ()) -> Path:
    """A self-contained HTML page: plain-text ``intro``, ``tables`` (title, header, rows), then ``figures``
    (figure, caption)."""
    from ..report.html import Report, esc

    report = Report(title, esc(intro))
    for heading, header, rows in tables:
        report.section(heading).table(header, rows)
    if figures:
        s = report.section("Figures")
        for fig, caption in figures:
            s.figure(fig, caption)
    return report.write(path)


def token_label(i: int, s: str) -> str:
    """``"i:token"`` with unprintable tokens shown as their repr."""
    return f"{i}:{s if s.isprintable() else repr(s)}"
