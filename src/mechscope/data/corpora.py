"""The ``prose`` corpus: English text from two Debian packages, fetched once and cached.

- ``python3.11-doc``: the Python documentation's reStructuredText sources (``_sources/**/*.rst.txt``), cleaned to
  plain English by :mod:`mechscope.data.rest`, one document per section (small sections merged to about 4 KB).
- ``fortunes`` and ``fortunes-min``: the fortune(6) quotation files, one document per quotation (attribution lines
  kept); the ``.dat`` indexes, the ``.u8`` links, the offensive ``off/`` set and ``ascii-art`` are left out.

:func:`fetch_prose` runs ``apt-get download`` and ``dpkg-deb -x`` in a temporary folder (no installation, root not
needed) and :func:`build_prose` writes ``$MECHSCOPE_HOME/corpora/prose/``::

    manifest.json      packages (name, version, .deb sha256), raw file checksums, document count/chars/sha256
    documents.jsonl    {"id", "source", "path", "text"} per document, deduplicated, in a fixed order
    raw/               the extracted source files (python-doc/..., fortunes/...) and both copyright files

:func:`prose_records` / :func:`prose_corpus` read it back for a split (see :mod:`mechscope.data.splits`), checking the
manifest first; a missing corpus raises :class:`DataSourceError` naming the fetch command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..files import atomic_folder, atomic_write_text, sha256_file
from ..models.builtin import cache_root
from .rest import rest_sections, section_labels
from .sources import DataSourceError
from .splits import check_split, in_split, order_key, split_of

log = logging.getLogger(__name__)

PROSE_PACKAGES = ("python3.11-doc", "fortunes", "fortunes-min")
FETCH_COMMAND = "mechscope data fetch prose"
FORMAT_VERSION = 1  # bump when cleaning changes: older caches are rebuilt from raw/ on first read
SECTION_CHARS = 4000
FORTUNE_SKIP = frozenset({"ascii-art"})
NO_PROSE_HINT = ("Without it, train on --source code (the Python standard library, always present), a local folder "
                 "of .txt/.md/.jsonl/.parquet files (--source path/to/folder), or a Hugging Face dataset "
                 "(--source hf:owner/name).")


class CorpusFetchError(DataSourceError):
    """The prose corpus could not be fetched (no apt-get, packages not found, extraction failed)."""


def corpora_root() -> Path:
    """``$MECHSCOPE_HOME/corpora`` (``MECHSCOPE_HOME`` defaults to ``~/.cache/mechscope``)."""
    return cache_root() / "corpora"


def prose_dir() -> Path:
    """Where the fetched prose corpus lives: ``$MECHSCOPE_HOME/corpora/prose``."""
    return corpora_root() / "prose"


_sha256 = sha256_file


def normalise(text: str) -> str:
    """Whitespace-normalised text: the key under which documents are deduplicated."""
    return " ".join(text.split())


def parse_fortunes(text: str) -> list[str]:
    """Quotations of a fortune file (separated by lines holding only ``%``), tidied; overstrikes removed."""
    text = re.sub(r".\x08", "", text)
    quotes = []
    for chunk in re.split(r"(?m)^%[ \t]*$", text):
        lines = [" ".join(line.split()) for line in chunk.splitlines()]
        quote = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if quote:
            quotes.append(quote)
    return quotes


def _find_doc_sources(extract_root: Path) -> Path | None:
    found = sorted(extract_root.glob("usr/share/doc/python3*/html/_sources"))
    return found[-1] if found else None


def _collect_raw(extract_root: Path, raw: Path) -> None:
    """Copy the files the corpus is built from out of an extracted package tree into ``raw``."""
    docs = _find_doc_sources(extract_root)
    if docs is not None:
        for f in sorted(docs.rglob("*.rst.txt")):
            dest = raw / "python-doc" / f.relative_to(docs)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
    fortunes = extract_root / "usr/share/games/fortunes"
    if fortunes.is_dir():
        (raw / "fortunes").mkdir(parents=True, exist_ok=True)
        for f in sorted(fortunes.iterdir()):  # top level only: skips the offensive off/ set
            if f.is_file() and not f.is_symlink() and f.suffix not in (".dat", ".u8") and f.name not in FORTUNE_SKIP:
                shutil.copyfile(f, raw / "fortunes" / f.name)
    (raw / "licences").mkdir(parents=True, exist_ok=True)
    for copyright_file in sorted(extract_root.glob("usr/share/doc/*/copyright")):
        shutil.copyfile(copyright_file, raw / "licences" / f"{copyright_file.parent.name}.copyright")
    if docs is None and not fortunes.is_dir():
        raise CorpusFetchError(f"{extract_root} holds neither python3.*-doc sources nor fortune files")


def _doc_substitutions(packages: list[dict[str, str]]) -> dict[str, str]:
    for p in packages:
        m = re.match(r"python(\d+\.\d+)-doc$", p.get("name", ""))
        if m:
            release = re.match(r"[\d.]+", p.get("version", "")) or None
            return {"version": m.group(1), "release": release.group(0).rstrip(".") if release else m.group(1)}
    return {}


def build_documents(raw: Path, substitutions: dict[str, str] | None = None) -> tuple[list[dict[str, str]], int]:
    """Cleaned, deduplicated documents from a ``raw`` folder (in :func:`order_key` order), and the duplicate count."""
    records: list[dict[str, str]] = []
    rst_files = sorted((raw / "python-doc").rglob("*.rst.txt")) if (raw / "python-doc").is_dir() else []
    sources = {f: f.read_text(encoding="utf-8", errors="replace") for f in rst_files}
    labels: dict[str, str] = {}
    for src in sources.values():
        labels.update(section_labels(src))
    for f, src in sources.items():
        rel = f.relative_to(raw / "python-doc").as_posix()
        for text in rest_sections(src, target_chars=SECTION_CHARS, substitutions=substitutions, labels=labels):
            records.append({"source": "python-doc", "path": rel, "text": text})
    if (raw / "fortunes").is_dir():
        for f in sorted((raw / "fortunes").iterdir()):
            for text in parse_fortunes(f.read_text(encoding="utf-8", errors="replace")):
                records.append({"source": "fortunes", "path": f.name, "text": text})
    seen: set[str] = set()
    unique: list[dict[str, str]] = []
    for r in records:
        doc_id = hashlib.sha1(normalise(r["text"]).encode("utf-8")).hexdigest()[:16]
        if doc_id not in seen:
            seen.add(doc_id)
            unique.append({"id": doc_id, **r})
    unique.sort(key=lambda r: order_key(r["id"]))
    return unique, len(records) - len(unique)


_write_atomic = atomic_write_text


def _write_documents(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """(Re)build ``documents.jsonl`` from ``out/raw`` and write the manifest; returns the manifest."""
    records, dropped = build_documents(out / "raw", _doc_substitutions(manifest.get("packages", [])))
    _write_atomic(out / "documents.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    by_source: dict[str, dict[str, int]] = {}
    for r in records:
        entry = by_source.setdefault(r["source"], {"documents": 0, "chars": 0, "heldout_documents": 0})
        entry["documents"] += 1
        entry["chars"] += len(r["text"])
        entry["heldout_documents"] += split_of(r["id"]) == "heldout"
    manifest = manifest | {
        "format_version": FORMAT_VERSION,
        "documents": {"file": "documents.jsonl", "sha256": _sha256(out / "documents.jsonl"), "count": len(records),
                      "chars": sum(len(r["text"]) for r in records), "duplicates_dropped": dropped,
                      "by_source": by_source},
    }
    _write_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def build_prose(extract_root: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                packages: list[dict[str, str]] | None = None) -> Path:
    """Build the prose corpus from an extracted package tree (``usr/share/...``) into ``out`` (default
    :func:`prose_dir`), replacing what was there; ``packages`` (name, version, sha256) go into the manifest."""
    out = Path(out) if out is not None else prose_dir()
    with atomic_folder(out) as staging:
        _collect_raw(Path(extract_root), staging / "raw")
        raw_files = {p.relative_to(staging / "raw").as_posix(): _sha256(p)
                     for p in sorted((staging / "raw").rglob("*")) if p.is_file()}
        _write_documents(staging, {"corpus": "prose", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "packages": packages or [], "raw_files": raw_files,
                                   "raw_file_count": len(raw_files)})
    return out


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _download(packages: tuple[str, ...], into: Path) -> list[Path]:
    result = _run(["apt-get", "download", *packages], into)
    missing = re.findall(r"Unable to locate package (\S+)", result.stderr)
    if missing and any(m.startswith("python3.") for m in missing):  # another release: python3-doc names it
        dep = _run(["apt-cache", "depends", "python3-doc"], into)
        found = re.findall(r"Depends: (python3\.\d+-doc)", dep.stdout)
        if found:
            packages = tuple(found[0] if p.startswith("python3.") else p for p in packages)
            result = _run(["apt-get", "download", *packages], into)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise CorpusFetchError(f"`apt-get download {' '.join(packages)}` failed ({tail}). If the package lists are "
                               f"empty, run `apt-get update` as root first. {NO_PROSE_HINT}")
    return sorted(into.glob("*.deb"))


def fetch_prose(*, force: bool = False, out: str | os.PathLike[str] | None = None) -> Path:
    """Download the Debian packages, extract them and build the prose corpus (once; ``force`` rebuilds).

    Needs ``apt-get`` and ``dpkg-deb`` (Debian/Ubuntu) and access to a Debian mirror, not root. Raises
    :class:`CorpusFetchError` with what to do instead when they are missing. Returns the corpus folder.
    """
    out = Path(out) if out is not None else prose_dir()
    if not force and (out / "manifest.json").is_file():
        _checked_manifest(out)
        return out
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise CorpusFetchError(f"fetching the prose corpus needs Debian's `{tool}` (not found on this machine): "
                                   f"it is built from the packages {', '.join(PROSE_PACKAGES)}. {NO_PROSE_HINT}")
    with tempfile.TemporaryDirectory(prefix="mechscope-prose-") as tmp:
        tmp_path = Path(tmp)
        debs = _download(PROSE_PACKAGES, tmp_path)
        packages = []
        for deb in debs:
            fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], tmp_path).stdout
            info = dict(line.split(": ", 1) for line in fields.strip().splitlines() if ": " in line)
            packages.append({"name": info.get("Package", deb.name), "version": info.get("Version", "?"),
                             "sha256": _sha256(deb), "file": deb.name})
            extracted = _run(["dpkg-deb", "-x", str(deb), str(tmp_path / "root")], tmp_path)
            if extracted.returncode != 0:
                raise CorpusFetchError(f"`dpkg-deb -x {deb.name}` failed: {extracted.stderr.strip()}")
        log.info("building the prose corpus from %s", ", ".join(f"{p['name']} {p['version']}" for p in packages))
        return build_prose(tmp_path / "root", out, packages=packages)


def _checked_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a built corpus, rebuilding documents.jsonl from raw/ after a cleaning change; raises
    DataSourceError (naming the fetch command) when the corpus is missing or its documents do not match."""
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise DataSourceError(f"the prose corpus is not fetched ({manifest_path} does not exist): run "
                              f"`{FETCH_COMMAND}` (or `make fetch`); it needs Debian's apt-get. {NO_PROSE_HINT}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("corpus") != "prose":
        raise DataSourceError(f"{manifest_path} is not a prose corpus manifest; run `{FETCH_COMMAND} --force`")
    if manifest.get("format_version") != FORMAT_VERSION:
        if not (root / "raw").is_dir():
            raise DataSourceError(f"{root} was built by another mechscope version and has no raw/ files; run "
                                  f"`{FETCH_COMMAND} --force`")
        log.info("rebuilding %s/documents.jsonl (format %s -> %s)", root, manifest.get("format_version"),
                 FORMAT_VERSION)
        manifest = _write_documents(root, manifest)
    docs = root / manifest["documents"]["file"]
    if not docs.is_file() or _sha256(docs) != manifest["documents"]["sha256"]:
        raise DataSourceError(f"{docs} does not match its manifest (changed or incomplete); run "
                              f"`{FETCH_COMMAND} --force`")
    return manifest


def prose_manifest(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The checked manifest of the fetched prose corpus (DataSourceError naming the fetch command if absent)."""
    return _checked_manifest(Path(root) if root is not None else prose_dir())


def prose_records(split: str = "train", *, root: str | os.PathLike[str] | None = None,
                  source: str | None = None) -> Iterator[dict[str, str]]:
    """Document records (``id``, ``source``, ``path``, ``text``) of one split, in the corpus's fixed order;
    ``source`` keeps only ``"python-doc"`` or ``"fortunes"``."""
    check_split(split)
    folder = Path(root) if root is not None else prose_dir()
    manifest = _checked_manifest(folder)
    return _records(folder / manifest["documents"]["file"], split, source)


def _records(path: Path, split: str, source: str | None) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if (source is None or record["source"] == source) and in_split(record["id"], split):
                yield record


def prose_corpus(split: str = "train", *, root: str | os.PathLike[str] | None = None,
                 source: str | None = None) -> Iterator[str]:
    """The prose corpus's documents (``str``) of one split: ``"train"`` (95%), ``"heldout"`` (5%) or ``"all"``."""
    return (record["text"] for record in prose_records(split, root=root, source=source))
