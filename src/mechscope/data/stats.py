"""Sizes of text sources in documents, characters and tokens (what ``mechscope data info`` prints).

Token counts are the documents' own tokens (``add_special_tokens=False``); packing adds one separator token per
document on top (see :mod:`mechscope.data.packing`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .specs import mixture_components, resolve
from .splits import mixture_tagged


@dataclass
class SourceSize:
    """Size of one text source."""

    spec: str
    """The source spec (or a label such as ``prose@train/fortunes``)."""
    documents: int = 0
    """Documents read."""
    chars: int = 0
    """Characters of those documents."""
    tokens: int = 0
    """Tokens of those documents (no separators)."""

    def add(self, docs: list[str], tokenizer: Any) -> None:
        """Count a batch of documents."""
        self.documents += len(docs)
        self.chars += sum(len(d) for d in docs)
        self.tokens += sum(len(ids) for ids in tokenizer(docs, add_special_tokens=False)["input_ids"])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def count_tokens(docs: Iterable[str], tokenizer: Any, *, label: str = "", batch: int = 64) -> SourceSize:
    """Documents, characters and tokens of ``docs`` under ``tokenizer`` (a Hugging Face tokenizer)."""
    size = SourceSize(label)
    it = iter(docs)
    while chunk := list(itertools.islice(it, batch)):
        size.add(chunk, tokenizer)
    return size


def source_size(spec: str, tokenizer: Any, *, batch: int = 64) -> SourceSize:
    """Size of a whole source spec (a mixture until its first component runs out)."""
    return count_tokens(resolve(spec), tokenizer, label=spec, batch=batch)


def mixture_sizes(spec: str, tokenizer: Any, *, batch: int = 64) -> list[SourceSize]:
    """Per-component sizes of a mixture read to its end, then the total: shows the token shares a character
    ratio gives."""
    comps = mixture_components(spec)
    sizes = [SourceSize(f"{spec} / {c}") for c, _ in comps]
    pending: list[list[str]] = [[] for _ in comps]
    for i, doc in mixture_tagged([resolve(c) for c, _ in comps], [w for _, w in comps]):
        pending[i].append(doc)
        if len(pending[i]) >= batch:
            sizes[i].add(pending[i], tokenizer)
            pending[i] = []
    for size, rest in zip(sizes, pending):
        if rest:
            size.add(rest, tokenizer)
    total = SourceSize(spec, sum(s.documents for s in sizes), sum(s.chars for s in sizes),
                       sum(s.tokens for s in sizes))
    return [*sizes, total]
