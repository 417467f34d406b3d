"""Small file helpers shared by every package: atomic writes, file checksums, JSON reading.

This module imports nothing else from mechscope, so any package (``data`` and ``models`` included) can use it.

Atomic writes go to a temporary file in the target's folder (``.NAME.XXXX.tmp``) that is moved into place with
``os.replace``, so a reader sees the old file or the new one, never half of one; the temporary file is removed if
writing fails. Written files get mode 0o644 and folders 0o755 (``mkstemp`` / ``mkdtemp`` make them private;
outputs are meant to be shared).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


def atomic_write(path: PathLike, write: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """Call ``write(tmp)`` to fill a temporary file next to ``path``, then move it to ``path``; returns ``path``.

    ``fsync``: flush the file to disk before the move (for files whose loss after a crash matters).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            fsync_path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def fsync_path(path: PathLike) -> None:
    """Flush a file's (or a folder's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_folder(folder: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success fsync its files and rename it to ``folder``.

    An existing ``folder`` is moved aside first and deleted afterwards. On error the temporary folder is removed
    and ``folder`` is left as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(tmp, 0o755)
        yield tmp
        for file in tmp.iterdir():
            fsync_path(file)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
        fsync_path(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def atomic_write_text(path: PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=fsync)


def atomic_write_json(path: PathLike, data: Any, *, fsync: bool = False, **dumps: Any) -> Path:
    """Write ``json.dumps(data, **dumps)`` to ``path`` atomically (the text is built before the file is opened)."""
    return atomic_write_text(path, json.dumps(data, **dumps), fsync=fsync)


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class JSONFileError(ValueError):
    """A JSON file that cannot be read: too large, not UTF-8, invalid JSON or of the wrong kind."""


def read_json(path: PathLike, *, max_bytes: int | None = None, expect: type | None = None,
              error: type[Exception] = JSONFileError) -> Any:
    """Parse the JSON file ``path``; every failure raises ``error`` with a message naming the file.

    ``max_bytes``: refuse larger files before reading them. ``expect``: the type the document must have (``dict``
    for a JSON object, ``list`` for an array).
    """
    path = Path(path)
    size = path.stat().st_size  # a missing file: FileNotFoundError, which names it
    if max_bytes is not None and size > max_bytes:
        raise error(f"{path} is {size} bytes, more than the {max_bytes} read as JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON: {e}") from e
    if expect is not None and not isinstance(data, expect):
        kind = "a JSON object" if expect is dict else "a JSON array" if expect is list else expect.__name__
        raise error(f"{path} must hold {kind}, got {type(data).__name__}")
    return data


__all__ = ["JSONFileError", "atomic_folder", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "fsync_path", "read_json", "sha256_file"]
