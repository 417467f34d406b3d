"""One self-contained HTML report for a run folder written by mechscope commands.

    >>> path = write_run_report("runs/a")          # runs/a/report.html

What is recognised (in the folder and in its immediate sub-folders, e.g. the runs a tour writes):

- ``mechscope train``: ``run.json`` (model, hook points, specs), ``metrics.jsonl`` (training curves) and
  ``eval.json`` (dictionary quality, the ``mechscope-eval/1`` schema), with the dictionary folders inside;
- ``mechscope features``: ``features.db`` (and a link to ``dashboards/index.html``);
- ``mechscope attribute``: ``graph.json`` (and ``graphs/*.json``), the attribution-graph viewer layout;
- ``mechscope acdc``: ``edges.json`` (and ``circuit.png``);
- ``mechscope heads``: ``heads.json``; ``mechscope probe``: ``probe.json``;
- any other JSON file with a top-level ``"command"`` field (``results.json`` of ``mechscope patch``, ``lens.json``,
  ``dla.json``): its scalar fields and the PNG figures next to it;
- a dictionary folder (``cfg.json`` + ``sae_weights.safetensors``).

Every section is built from the files alone (JSON, JSONL, SQLite; no model, nothing unpickled). A file that cannot
be read gives a section saying why instead of failing the whole report.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from .html import Report, esc
from .run_sections import BUILDERS, MAX_JSON_BYTES, TITLES, embed, read_json

log = logging.getLogger(__name__)

LOOKED_FOR = ("run.json", "metrics.jsonl", "eval.json", "features.db", "graph.json", "graphs/*.json", "edges.json",
              "heads.json", "probe.json", "results.json (or another JSON with a \"command\" field)",
              "cfg.json + sae_weights.safetensors")
KNOWN_JSON = {"run.json", "eval.json", "graph.json", "edges.json", "heads.json", "probe.json", "cfg.json",
              "manifest.json", "graph_meta.json"}
SKIP_DIRS = {"checkpoints", "dashboards", "graph", "graphs"}


class NoArtifactsError(FileNotFoundError):
    """The folder holds nothing a report can show."""


def _is_dictionary(folder: Path) -> bool:
    return (folder / "cfg.json").is_file() and (folder / "sae_weights.safetensors").is_file()


def _command_json(path: Path) -> bool:
    if path.name in KNOWN_JSON or path.stat().st_size > MAX_JSON_BYTES:
        return False
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("command"), str)


def find_artifacts(folder: Path) -> list[tuple[str, Path]]:
    """``[(kind, path)]`` of what a report can show in ``folder`` itself (not its sub-folders)."""
    found: list[tuple[str, Path]] = []
    if (folder / "run.json").is_file() or (folder / "metrics.jsonl").is_file():
        found.append(("train", folder))
    elif _is_dictionary(folder):
        found.append(("dictionary", folder))
    for name, kind in (("eval.json", "eval"), ("features.db", "features"), ("graph.json", "graph"),
                       ("edges.json", "acdc"), ("heads.json", "heads"), ("probe.json", "probe")):
        if (folder / name).is_file():
            found.append((kind, folder / name))
    if (folder / "graphs").is_dir():
        found += [("graph", p) for p in sorted((folder / "graphs").glob("*.json"))]
    found += [("command", p) for p in sorted(folder.glob("*.json")) if _command_json(p)]
    return found


def _folders(root: Path) -> list[Path]:
    subs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
            and d.name not in SKIP_DIRS and not _is_dictionary(d)]
    return [root, *subs]


def _shown(root: Path, kind: str, path: Path) -> str:
    """The file a found artifact is named by in the report's introduction."""
    if kind == "train":
        path = path / ("run.json" if (path / "run.json").is_file() else "metrics.jsonl")
    elif kind == "dictionary":
        path = path / "cfg.json"
    return path.relative_to(root).as_posix()


def build_run_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Report:
    """The report of ``folder`` (raises :class:`NoArtifactsError` naming what it looks for when there is nothing);
    ``out`` is where it will be written (links are made relative to it)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder not found: {root}")
    out_path = Path(out) if out is not None else root / "report.html"
    ctx: dict[str, Any] = {"claimed": set(), "command_folders": [], "out_dir": out_path.parent}
    found = [(f, kind, p) for f in _folders(root) for kind, p in find_artifacts(f)]
    if not found:
        raise NoArtifactsError(f"nothing to report in {root}: looked for {', '.join(LOOKED_FOR)} (in the folder and "
                               f"its sub-folders); run a mechscope command with --out {root} first")
    report = Report(f"mechscope report: {root.resolve().name}",
                    f"Run folder <code>{esc(root.resolve())}</code>: " + ", ".join(
                        esc(_shown(root, kind, p)) for _, kind, p in found) + ".")
    for f, kind, p in found:
        where = f.relative_to(root).as_posix()
        title = TITLES.get(kind, "")
        if kind == "command":
            title = f"mechscope {read_json(p)['command']}"
        if kind == "graph" and p.parent.name == "graphs":
            title += f" {p.stem}"
        s = report.section(title + ("" if where == "." else f" ({where})"))
        try:
            BUILDERS[kind](s, p, ctx)
        except (OSError, ValueError, KeyError, TypeError, IndexError, sqlite3.Error) as e:
            log.warning("report: could not read %s: %s", p, e)
            s.text(f"Could not read <code>{esc(p.relative_to(root).as_posix() or '.')}</code>: {esc(e)}")
    # Figures the commands wrote that no section drew from the data: with that folder's command section, else alone.
    for f in dict.fromkeys(f for f, _, _ in found):
        pngs = [p for p in sorted(f.glob("*.png")) if p not in ctx["claimed"]]
        if not pngs:
            continue
        s = next((sec for sec, folder in ctx["command_folders"] if folder == f), None)
        if s is None:
            where = f.relative_to(root).as_posix()
            s = report.section("Figures" + ("" if where == "." else f" ({where})"))
        for png in pngs:
            embed(s, png, png.name, ctx)
    return report


def write_run_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Build the report of ``folder`` and write it atomically to ``out`` (default ``folder/report.html``)."""
    out_path = Path(out) if out is not None else Path(folder) / "report.html"
    return build_run_report(folder, out_path).write(out_path)
