"""Text sources: iterables of documents (``str``) for tokenising and packing.

- :func:`stdlib_corpus`: the built-in offline code corpus, the Python standard library's own source files
  (docstrings, comments and code) in a fixed, sorted order: always available, deterministic, millions of tokens.
- :func:`code_corpus`: the same files as the named source ``code``: split into train / held-out by a hash of each
  file's relative path and read in a fixed hashed order (see :mod:`mechscope.data.splits`).
- :func:`local_files`: plain text (``.txt``/``.md``/``.py``..., one document per file), JSON Lines (one document per
  line, field ``text``) and Parquet (column ``text``, needs ``pyarrow``).
- :func:`hf_dataset`: a Hugging Face ``datasets`` dataset, streamed (the path for users online; ``datasets`` is
  imported only when used).
- :func:`open_source`: documents from a short spec string: a named corpus (``prose``, ``code``, ``stdlib``), a
  mixture (``mixture``, ``mix:prose=0.7,code=0.3``), each with an optional ``@train`` / ``@heldout`` / ``@all``;
  ``hf:owner/name``; or a path (the grammar is in :mod:`mechscope.data.specs`).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from .splits import in_split, order_key

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


def _read_files(files: Iterable[Path], max_docs: int | None) -> Iterator[str]:
    for i, path in enumerate(files):
        if max_docs is not None and i >= max_docs:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            log.debug("skipping unreadable %s", path)
            continue
        if text.strip():
            yield text


def stdlib_corpus(root: str | os.PathLike[str] | None = None, *, max_docs: int | None = None,
                  split: str = "all") -> Iterator[str]:
    """The built-in offline corpus: one document per standard-library source file, in sorted path order
    (``split``: keep only the ``train`` or ``heldout`` files of :func:`code_corpus`'s split)."""
    base = Path(root) if root is not None else stdlib_root()
    files = [p for p in stdlib_files(base) if in_split(p.relative_to(base).as_posix(), split)]
    return _read_files(files, max_docs)


def code_corpus(split: str = "train", root: str | os.PathLike[str] | None = None, *,
                max_docs: int | None = None) -> Iterator[str]:
    """The named source ``code``: standard-library files of one split (by a hash of the relative path), in a fixed
    hashed order so that any prefix samples the whole library rather than its first modules alphabetically."""
    base = Path(root) if root is not None else stdlib_root()
    keyed = [(p.relative_to(base).as_posix(), p) for p in stdlib_files(base)]
    files = [p for key, p in sorted(keyed, key=lambda kp: order_key(kp[0])) if in_split(key, split)]
    return _read_files(files, max_docs)


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
    """Documents from a spec: a named corpus or mixture (``prose``, ``code``, ``stdlib``, ``mixture``,
    ``mix:prose=0.7,code=0.3``, each optionally ``@train``/``@heldout``/``@all``), ``hf:owner/name[:config][@split]``
    or a local file / directory. The spec is checked at once: an unknown name, a bad split or an unfetched corpus
    raises :class:`DataSourceError` here, not when the first document is read."""
    from .specs import resolve  # specs imports the named corpora, which import this module

    docs = resolve(spec, field=field)
    return docs if max_docs is None else itertools.islice(docs, max_docs)
