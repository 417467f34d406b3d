"""Source specs: the strings ``mechscope train --source``, ``mechscope features --corpus`` and
:func:`mechscope.data.open_source` take.

Grammar::

    NAME[@SPLIT]                      a named corpus or named mixture (NAMED_SOURCES, NAMED_MIXTURES)
    mix:SPEC=W,SPEC=W[,...]           a mixture of specs with weights (normalised; by characters)
    hf:owner/name[:config][@split]    a Hugging Face dataset (split is the dataset's own split name)
    PATH                              a local file or folder (.txt/.md/.rst/.py, .jsonl, .parquet)

``SPLIT`` is ``train`` (the default for ``prose``, ``code`` and mixtures), ``heldout`` or ``all``; on a named mixture
it applies to every component. ``stdlib`` is the code corpus as it always was (every file, path order; its default
split is ``all``), kept so that runs recorded with ``--source stdlib`` replay the same stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import sources
from .sources import DataSourceError
from .splits import SPLITS, mixture


@dataclass(frozen=True)
class NamedSource:
    """A built-in corpus reachable by name."""

    open: Callable[[str], Iterator[str]]
    """Documents of a split (``train``/``heldout``/``all``); raises DataSourceError when the corpus is absent."""
    default_split: str
    """Split used when the spec names none."""
    description: str
    """One line for listings."""


def _prose(split: str) -> Iterator[str]:
    from .corpora import prose_corpus

    return prose_corpus(split)


NAMED_SOURCES: dict[str, NamedSource] = {
    "prose": NamedSource(_prose, "train", "English: Python documentation (reST cleaned) + fortune quotations "
                                          "(Debian packages; `mechscope data fetch prose`)"),
    "code": NamedSource(lambda split: sources.code_corpus(split), "train",
                        "Python standard library source files (always present), hashed order"),
    "stdlib": NamedSource(lambda split: sources.stdlib_corpus(split=split), "all",
                          "alias of code@all in the historical path order (recorded runs replay the same stream)"),
}
NAMED_MIXTURES: dict[str, dict[str, float]] = {
    "mixture": {"prose": 0.7, "code": 0.3},
}
DEFAULT_MIXTURE = "mixture"
SOURCE_HELP = ("text source: prose | code | stdlib | mixture (= mix:prose=0.7,code=0.3 by characters), optionally "
               "@train/@heldout/@all (named corpora default to @train, stdlib to @all); mix:SPEC=W,SPEC=W; "
               "a file or folder (.txt/.md/.jsonl/.parquet); or hf:owner/name[:config][@split]")


def source_names() -> list[str]:
    """Every named corpus and named mixture."""
    return [*NAMED_SOURCES, *NAMED_MIXTURES]


def _looks_like_name(spec: str) -> bool:
    return bool(spec) and not any(c in spec for c in "/\\.:=,") and not os.path.exists(spec)


def _unknown(spec: str) -> DataSourceError:
    return DataSourceError(f"unknown source {spec!r} (no such named source, and no such file or folder); valid "
                           f"names: {', '.join(source_names())} (optionally @{'/@'.join(SPLITS)}), or mix:NAME=W,..., "
                           "hf:owner/name, a file or folder")


def split_name(spec: str) -> tuple[str, str | None]:
    """``"prose@heldout"`` -> ``("prose", "heldout")``; ``"prose"`` -> ``("prose", None)``; split checked."""
    name, at, split = spec.partition("@")
    if not at:
        return spec, None
    if split not in SPLITS:
        raise DataSourceError(f"unknown split {split!r} in {spec!r}; valid splits: {', '.join(SPLITS)}")
    return name, split


def mixture_components(spec: str) -> list[tuple[str, float]]:
    """``(component spec, normalised weight)`` of a mixture spec (``mix:...`` or a named mixture[@split])."""
    if spec.startswith("mix:"):
        parts = [p.strip() for p in spec[4:].split(",") if p.strip()]
        comps = []
        for part in parts:
            sub, eq, weight = part.rpartition("=")
            try:
                w = float(weight)
            except ValueError:
                w = float("nan")
            if not eq or not sub or not w > 0:
                raise DataSourceError(f"mixture component {part!r} in {spec!r} is not SPEC=WEIGHT with a positive "
                                      "weight, e.g. mix:prose=0.7,code=0.3")
            comps.append((sub, w))
        if not comps:
            raise DataSourceError(f"empty mixture {spec!r}; e.g. mix:prose=0.7,code=0.3")
    else:
        name, split = split_name(spec)
        if name not in NAMED_MIXTURES:
            raise DataSourceError(f"{spec!r} is not a mixture; named mixtures: {', '.join(NAMED_MIXTURES)}")
        comps = [(f"{c}@{split}" if split else c, w) for c, w in NAMED_MIXTURES[name].items()]
    total = sum(w for _, w in comps)
    return [(c, w / total) for c, w in comps]


def is_mixture(spec: str) -> bool:
    """Whether ``spec`` names a mixture (``mix:...`` or a named mixture)."""
    return spec.startswith("mix:") or spec.partition("@")[0] in NAMED_MIXTURES


def resolve(spec: str, *, field: str = "text") -> Iterator[str]:
    """Documents of ``spec`` (see the module docstring); checks names, splits and named corpora at once."""
    spec = spec.strip()
    if spec.startswith("hf:"):
        rest, _, split = spec[3:].partition("@")
        path, _, name = rest.partition(":")
        return sources.hf_dataset(path, name or None, split=split or "train", field=field)
    if is_mixture(spec):
        comps = mixture_components(spec)
        return mixture([resolve(c, field=field) for c, _ in comps], [w for _, w in comps])
    if spec in NAMED_SOURCES:
        return NAMED_SOURCES[spec].open(NAMED_SOURCES[spec].default_split)
    if os.path.exists(spec):
        return sources.local_files(spec, field=field)
    name, at, _ = spec.partition("@")
    if at and name in NAMED_SOURCES:
        return NAMED_SOURCES[name].open(split_name(spec)[1] or NAMED_SOURCES[name].default_split)
    if _looks_like_name(name):
        raise _unknown(spec)
    raise DataSourceError(f"no such file or directory: {spec} (named sources: {', '.join(source_names())})")
