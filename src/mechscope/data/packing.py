"""Tokenise documents and pack them into fixed-length contexts with explicit BOS handling.

Every context is ``[BOS] + body`` (``prepend_bos=True``) or just ``body``; documents are concatenated with a
separator token between them (``separator="eos"`` by default) and cut into bodies of ``context_size - 1`` (or
``context_size``) tokens, so no padding is ever needed. :func:`train_mask` marks the positions whose activations
should be used for training (special tokens such as BOS, whose residual norm is huge, can be excluded).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from jaxtyping import Bool, Int
from torch import Tensor

T = TypeVar("T")


@dataclass
class PackConfig:
    """How documents become fixed-length token contexts."""

    context_size: int = 128
    """Tokens per context (BOS included)."""
    prepend_bos: bool = True
    """Start every context with the tokenizer's BOS token (its EOS when it has no BOS)."""
    separator: Literal["eos", "bos", "none"] = "eos"
    """Token put between consecutive documents."""
    tokenize_batch: int = 32
    """Documents tokenised per call to the (fast) tokenizer."""

    def __post_init__(self) -> None:
        if not isinstance(self.context_size, int) or self.context_size < 2:
            raise ValueError(f"context_size must be an integer >= 2, got {self.context_size!r}")
        if self.separator not in ("eos", "bos", "none"):
            raise ValueError(f"separator must be eos, bos or none, got {self.separator!r}")
        if self.tokenize_batch < 1:
            raise ValueError("tokenize_batch must be >= 1")


def _special_id(tokenizer: Any, which: str) -> int:
    order = ("bos_token_id", "eos_token_id") if which == "bos" else ("eos_token_id", "bos_token_id")
    for attr in order:
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise ValueError("tokenizer has neither a BOS nor an EOS token; use prepend_bos=False and separator='none'")


def special_ids(tokenizer: Any) -> list[int]:
    """Ids of every special token of ``tokenizer`` (BOS, EOS, pad, chat markers ...)."""
    return sorted({int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None})


def _token_stream(docs: Iterable[str], tokenizer: Any, cfg: PackConfig) -> Iterator[int]:
    sep = [] if cfg.separator == "none" else [_special_id(tokenizer, cfg.separator)]
    docs = iter(docs)
    while chunk := list(itertools.islice(docs, cfg.tokenize_batch)):
        for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            yield from ids
            yield from sep


def pack(docs: Iterable[str], tokenizer: Any, cfg: PackConfig | None = None) -> Iterator[Int[Tensor, " ctx"]]:
    """Yield contexts of exactly ``cfg.context_size`` token ids (LongTensor), in document order."""
    cfg = cfg or PackConfig()
    head = [_special_id(tokenizer, "bos")] if cfg.prepend_bos else []
    body = cfg.context_size - len(head)
    stream = _token_stream(docs, tokenizer, cfg)
    while len(chunk := list(itertools.islice(stream, body))) == body:
        yield torch.tensor(head + chunk, dtype=torch.long)


def batched(contexts: Iterable[Tensor], batch_size: int) -> Iterator[Int[Tensor, "batch ctx"]]:
    """Stack contexts into ``(batch_size, ctx)`` batches (a shorter final batch is kept)."""
    it = iter(contexts)
    while chunk := list(itertools.islice(it, batch_size)):
        yield torch.stack(chunk)


def rank_slice(items: Iterable[T], rank: int, world_size: int) -> Iterator[T]:
    """Every ``world_size``-th item starting at ``rank``: each distributed rank's own share of the data."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    return itertools.islice(items, rank, None, world_size)


def train_mask(ids: Int[Tensor, "batch ctx"], exclude: Iterable[int] = ()) -> Bool[Tensor, "batch ctx"]:
    """True at positions whose token is not in ``exclude`` (e.g. :func:`special_ids`)."""
    excluded = torch.tensor(sorted(set(exclude)), dtype=ids.dtype, device=ids.device)
    return ~torch.isin(ids, excluded) if excluded.numel() else torch.ones_like(ids, dtype=torch.bool)
