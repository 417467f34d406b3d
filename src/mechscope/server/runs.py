"""The run folders a server may read, and safe paths inside them.

A *run folder* is a sub-folder of the ``--runs`` folder (or that folder itself) holding any of the artifacts
mechscope writes: dictionary folders (``cfg.json`` + ``sae_weights.safetensors``), ``features.db``,
``dashboards/``, ``graph.json`` (or ``graphs/*.json``), ``report.html``, ``eval.json``, ``metrics.jsonl``.

Every file the server reads goes through :meth:`RunRegistry.resolve`: the run must be registered, the relative
path must be plain (no ``..``, no absolute path, no backslash, no hidden part, no NUL), and the fully resolved path
(symlinks followed) must stay inside the resolved run folder. Nothing is ever unpickled: only JSON, JSONL, SQLite,
safetensors (through :mod:`mechscope.dictionaries`) and static text files are read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DICT_FILES = ("cfg.json", "sae_weights.safetensors")
MAX_SCAN_ENTRIES = 5000  # files looked at per run folder when describing it
MAX_SCAN_DEPTH = 3
MAX_JSON_BYTES = 4 * 2**20  # eval.json / graph.json / cfg.json read at most this large
MAX_JSON_DEPTH = 64  # mechscope's JSON files nest a few levels; anything deeper is refused


class RunError(LookupError):
    """An unknown run or a file that is missing or not allowed (the API answers 404 / 400)."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.status = status


@dataclass
class RunInfo:
    """What one run folder holds (paths relative to the run folder, POSIX style)."""

    name: str
    dictionaries: list[dict] = field(default_factory=list)
    feature_dbs: list[str] = field(default_factory=list)
    dashboards: list[str] = field(default_factory=list)
    graphs: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    evals: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in self.__dict__.items() if k != "name" and v]
        return ", ".join(parts) or "nothing mechscope recognises"


def check_relative(rel: str) -> PurePosixPath:
    """``rel`` as a plain relative path, or :class:`RunError` (400) saying what is wrong with it."""
    if not rel or "\x00" in rel:
        raise RunError("empty path or NUL byte in path", 400)
    if "\\" in rel or rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        raise RunError(f"path {rel!r} must be relative to the run folder, with forward slashes", 400)
    p = PurePosixPath(rel)
    for part in p.parts:
        if part in ("..", "."):
            raise RunError(f"path {rel!r} may not contain '.' or '..' parts", 400)
        if part.startswith("."):
            raise RunError(f"path {rel!r} names a hidden file or folder", 400)
    return p


def read_json(path: Path) -> object:
    """Parse a JSON file no larger than :data:`MAX_JSON_BYTES`."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise RunError(f"{path.name} is {size} bytes, more than the {MAX_JSON_BYTES} the server reads", 413)
    return parse_json(path.read_bytes(), path.name)


def json_depth(obj: object) -> int:
    """Nesting depth of parsed JSON (iterative: no recursion limit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in (x.values() if isinstance(x, dict) else x))
    return deepest


def parse_json(data: bytes | str, name: str) -> object:
    """JSON text -> object, or :class:`RunError` (422) naming ``name`` when it is invalid or nested deeper than
    :data:`MAX_JSON_DEPTH` (deeper documents would exhaust Python's recursion when read or answered)."""
    try:
        obj = json.loads(data)
    except RecursionError:
        raise RunError(f"{name} is nested too deeply to read (more than {MAX_JSON_DEPTH} levels)", 422) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise RunError(f"{name} is not valid JSON: {e}", 422) from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise RunError(f"{name} is nested too deeply to read (more than {MAX_JSON_DEPTH} levels)", 422)
    return obj


class RunRegistry:
    """The run folders under ``root`` (re-scanned on demand, so new runs appear without a restart)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"runs folder {root} does not exist or is not a folder")
        self._runs: dict[str, Path] = {}
        self.scan()

    def scan(self) -> dict[str, Path]:
        """Register every sub-folder with a valid name (and ``root`` itself when it holds artifacts)."""
        runs: dict[str, Path] = {}
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and RUN_NAME.match(child.name):
                runs[child.name] = child.resolve()
        if _has_artifacts(self.root) and RUN_NAME.match(self.root.name) and self.root.name not in runs:
            runs[self.root.name] = self.root
        self._runs = runs
        return runs

    def names(self) -> list[str]:
        return list(self.scan())

    def folder(self, run: str) -> Path:
        """The resolved folder of registered run ``run``, or :class:`RunError` listing the valid names."""
        if not RUN_NAME.match(run or ""):
            raise RunError(f"{run!r} is not a valid run name", 400)
        if run not in self._runs:
            self.scan()
        if run not in self._runs:
            known = ", ".join(self._runs) or "none"
            raise RunError(f"unknown run {run!r}; runs served: {known}")
        return self._runs[run]

    def resolve(self, run: str, rel: str, *, kind: str = "file") -> Path:
        """The file (or folder, ``kind="dir"``) ``rel`` inside run ``run``, after every safety check."""
        base = self.folder(run)
        if kind == "dir" and rel in ("", "."):
            return base
        p = check_relative(rel)
        try:
            target = base.joinpath(*p.parts).resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise RunError(f"run {run!r} has no {kind} {rel!r}") from None
        except (OSError, RuntimeError) as e:  # symlink loops, permissions
            raise RunError(f"cannot open {rel!r} in run {run!r}: {e.__class__.__name__}", 400) from None
        if not target.is_relative_to(base):
            log.warning("refused %s in run %s: resolves outside the run folder", rel, run)
            raise RunError(f"path {rel!r} leaves the run folder", 400)
        if kind == "file" and not target.is_file():
            raise RunError(f"{rel!r} in run {run!r} is not a file")
        if kind == "dir" and not target.is_dir():
            raise RunError(f"{rel!r} in run {run!r} is not a folder")
        return target

    def describe(self, run: str) -> RunInfo:
        """Detect the artifacts in run ``run`` (walks at most :data:`MAX_SCAN_DEPTH` levels, no symlinks)."""
        base = self.folder(run)
        info = RunInfo(run)
        seen = 0
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            rel_dir = here.relative_to(base)
            depth = len(rel_dir.parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and depth < MAX_SCAN_DEPTH)
            files = {f for f in filenames if not f.startswith(".") and not (here / f).is_symlink()}
            seen += len(files)
            if seen > MAX_SCAN_ENTRIES:
                log.warning("run %s: stopped scanning after %d files", run, MAX_SCAN_ENTRIES)
                break
            rel = (lambda f: (rel_dir / f).as_posix())  # noqa: E731, B023  (used in this iteration only)
            if all(f in files for f in DICT_FILES):
                info.dictionaries.append(_dictionary_entry(here, rel_dir.as_posix()))
            if rel_dir.name == "dashboards":
                info.dashboards += sorted(rel(f) for f in files if f.endswith(".html"))
            for f in sorted(files):
                if f == "features.db" or (f.endswith(".db") and "features" in f):
                    info.feature_dbs.append(rel(f))
                elif f == "graph.json" or (rel_dir.name == "graphs" and f.endswith(".json")):
                    info.graphs.append(rel(f))
                elif f == "report.html":
                    info.reports.append(rel(f))
                elif f == "eval.json":
                    info.evals.append(rel(f))
                elif f == "metrics.jsonl":
                    info.metrics.append(rel(f))
        return info


def _dictionary_entry(folder: Path, rel: str) -> dict:
    """A dictionary folder's path and the headline fields of its ``cfg.json`` (JSON only, no weights read)."""
    entry: dict = {"path": rel}
    try:
        cfg = read_json(folder / "cfg.json")
    except (OSError, ValueError, RunError) as e:
        entry["error"] = f"unreadable cfg.json: {e}"
        return entry
    if isinstance(cfg, dict):
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        for key in ("architecture", "d_in", "d_sae", "hook_name", "model_name"):
            value = cfg.get(key, meta.get(key))
            if value is not None:
                entry[key] = value
    return entry


def _has_artifacts(folder: Path) -> bool:
    names = {"features.db", "graph.json", "report.html", "eval.json", "metrics.jsonl", "dashboards", "graphs",
             *DICT_FILES}
    try:
        return any(child.name in names for child in folder.iterdir())
    except OSError:
        return False
