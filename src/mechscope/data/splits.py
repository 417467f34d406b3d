"""Deterministic held-out splits, document order and mixtures of document streams.

- Splits: a document belongs to ``heldout`` when a hash of its key (content hash for ``prose``, relative path for
  ``code``) falls in the lowest :data:`HELDOUT_FRACTION` of the hash range, else to ``train``; ``all`` is both. The
  assignment depends on the key alone, so it is the same on every machine, in every call and for every corpus size.
- Order: named corpora are read in :func:`order_key` order (a second, independent hash), so any prefix of a corpus is
  a spread-out sample of it rather than its first few topics, and held-out documents are spread over the stream.
- Mixtures: :func:`mixture` interleaves several streams so that each one's share of the characters read so far stays
  at its weight (to within one document), and ends as soon as any stream runs out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence

SPLITS = ("train", "heldout", "all")
HELDOUT_FRACTION = 0.05


def _unit(salt: str, key: str) -> float:
    digest = hashlib.sha1(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_split(split: str) -> str:
    """``split`` itself when it is one of :data:`SPLITS`; otherwise ValueError naming the valid ones."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def split_of(key: str, heldout_fraction: float = HELDOUT_FRACTION) -> str:
    """``"heldout"`` or ``"train"``: the split of the document with this key (a deterministic hash)."""
    return "heldout" if _unit("split", key) < heldout_fraction else "train"


def in_split(key: str, split: str) -> bool:
    """Whether the document with this key belongs to ``split`` (``"all"`` holds every document)."""
    return check_split(split) == "all" or split_of(key) == split


def order_key(key: str) -> str:
    """Sort key giving named corpora their fixed, shuffled-looking order (independent of the split hash)."""
    return hashlib.sha1(f"order:{key}".encode()).hexdigest()


def mixture_tagged(streams: Sequence[Iterable[str]], weights: Sequence[float], *,
                   size: Callable[[str], int] = len) -> Iterator[tuple[int, str]]:
    """``(stream index, document)`` pairs of :func:`mixture`."""
    if len(streams) != len(weights) or not streams:
        raise ValueError("give one weight per stream (and at least one stream)")
    if any(not w > 0 for w in weights):
        raise ValueError(f"mixture weights must be positive, got {list(weights)}")
    total = float(sum(weights))
    shares = [w / total for w in weights]
    iters = [iter(s) for s in streams]
    consumed = [0.0] * len(iters)
    while True:
        # deficit scheduling: read next from the stream furthest below its share (ties: the first one)
        i = min(range(len(iters)), key=lambda j: (consumed[j] / shares[j], j))
        doc = next(iters[i], None)
        if doc is None:
            return
        consumed[i] += max(size(doc), 1)
        yield i, doc


def mixture(streams: Sequence[Iterable[str]], weights: Sequence[float], *,
            size: Callable[[str], int] = len) -> Iterator[str]:
    """Interleave document streams so each holds its weight's share of the ``size`` (characters by default).

    Deterministic (no randomness): the next document always comes from the stream whose consumed size is furthest
    below its share, so after any number of documents every stream's share is within one document of its weight.
    The mixture ends when any stream runs out (it never cycles, so no document is seen twice).
    """
    for _, doc in mixture_tagged(streams, weights, size=size):
        yield doc
