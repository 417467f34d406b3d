"""Text sources: iterables of documents (``str``) for tokenising and packing.

- :func:`stdlib_corpus`: the built-in offline corpus, the Python standard library's own source files (docstrings,
  comments and code) in a fixed, sorted order: always available, deterministic, millions of tokens.
- :func:`local_files`: plain text (``.txt``/``.md``/``.py``..., one document per file), JSON Lines (one document per
  line, field ``text``) and Parquet (column ``text``, needs ``pyarrow``).
- :func:`hf_dataset`: a Hugging Face ``datasets`` dataset, streamed (the path for users online; ``datasets`` is
  imported only when used).
- :func:`open_source`: one of the above from a short spec string (``stdlib``, ``hf:owner/name``, a path).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".text")
SKIP_DIRS = ("site-packages", "dist-packages", "__pycache__", "idlelib", "turtledemo")


class DataSourceError(ValueError):
    """A text source cannot be opened or read (missing file, unknown format, missing optional package)."""


def stdlib_root() -> Path:
    """The directory holding the Python standard library's source."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every ``.py`` file of the standard library, sorted by relative path (third-party packages excluded)."""
    return list(_stdlib_files(str(Path(root) if root is not None else stdlib_root())))


@functools.lru_cache(maxsize=4)
def _stdlib_files(root_str: str) -> tuple[Path, ...]:
    root = Path(root_str)
    if not root.is_dir():
        raise DataSourceError(f"standard library source not found at {root}")
    files = [p for p in root.rglob("*.py") if not any(part in SKIP_DIRS for part in p.relative_to(root).parts)]
    return tuple(sorted(files, key=lambda p: p.relative_to(root).as_posix()))


def stdlib_corpus(root: str | os.PathLike[str] | None = None, *, max_docs: int | None = None) -> Iterator[str]:
    """The built-in offline corpus: one document per standard-library source file, in sorted path order."""
    for i, path in enumerate(stdlib_files(root)):
        if max_docs is not None and i >= max_docs:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            log.debug("skipping unreadable %s", path)
            continue
        if text.strip():
            yield text


def _jsonl(path: Path, field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataSourceError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or field not in row:
                keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                raise DataSourceError(f"{path}:{lineno}: no field {field!r} (has: {keys}); pass field=...")
            yield str(row[field])


def _parquet(path: Path, field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataSourceError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise DataSourceError(f"{path}: no column {field!r} (has: {', '.join(pf.schema_arrow.names)}); pass field=...")
    for batch in pf.iter_batches(columns=[field]):
        yield from (str(v) for v in batch.column(0).to_pylist() if v is not None)


def local_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, field: str = "text"
                ) -> Iterator[str]:
    """Documents from local files (a directory is read recursively in sorted order); format from the suffix."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise DataSourceError(f"no such file or directory: {p}")
    for f in files:
        suffix = f.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            yield from _jsonl(f, field)
        elif suffix == ".parquet":
            yield from _parquet(f, field)
        elif suffix in TEXT_SUFFIXES:
            yield f.read_text(encoding="utf-8", errors="replace")
        else:
            raise DataSourceError(f"{f}: unknown format {suffix!r}; expected .jsonl, .parquet or {TEXT_SUFFIXES}")


def hf_dataset(path: str, name: str | None = None, *, split: str = "train", field: str = "text",
               streaming: bool = True) -> Iterator[str]:  # pragma: no cover - needs network
    """Documents from a Hugging Face dataset, streamed by default (``datasets`` is imported lazily)."""
    try:
        import datasets
    except ImportError:
        raise DataSourceError("Hugging Face datasets need the `datasets` package: pip install datasets") from None
    ds = datasets.load_dataset(path, name, split=split, streaming=streaming)
    for row in ds:
        if field not in row:
            raise DataSourceError(f"dataset {path!r} has no field {field!r} (has: {', '.join(row)})")
        yield str(row[field])


def open_source(spec: str, *, field: str = "text", max_docs: int | None = None) -> Iterator[str]:
    """Documents from a spec: ``stdlib``, ``hf:owner/name[:config][@split]``, or a local file / directory."""
    if spec == "stdlib":
        yield from stdlib_corpus(max_docs=max_docs)
        return
    if spec.startswith("hf:"):
        rest, _, split = spec[3:].partition("@")
        path, _, name = rest.partition(":")
        docs: Iterable[str] = hf_dataset(path, name or None, split=split or "train", field=field)
    else:
        docs = local_files(spec, field=field)
    for i, doc in enumerate(docs):
        if max_docs is not None and i >= max_docs:
            return
        yield doc
