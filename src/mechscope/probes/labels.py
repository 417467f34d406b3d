"""Per-token labels from a property of the token's text (e.g. capitalised), for probing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from ..models.hooked import HookedModel


def token_labels(model: HookedModel, texts: Sequence[str], predicate: Callable[[str], bool | None], *,
                 prepend_bos: bool | None = None) -> Int[Tensor, "batch pos"]:
    """``1`` / ``0`` per token where ``predicate(token_text)`` is True / False, ``-1`` where it returns None
    (not an example) and on padding. Tokenised exactly as ``model.tokenize(texts)`` does."""
    tokens = model.tokenize(list(texts), prepend_bos)
    ids = tokens.input_ids
    out = torch.full(ids.shape, -1, dtype=torch.long)
    lengths = tokens.lengths
    for b in range(ids.shape[0]):
        for t in range(int(lengths[b])):
            v = predicate(model.to_string([int(ids[b, t])]))
            if v is not None:
                out[b, t] = int(bool(v))
    return out


def is_capitalised(token: str) -> bool | None:
    """True for a word token starting with an upper-case letter, False for a lower-case one, None otherwise."""
    s = token.strip()
    if not s or not s[0].isalpha():
        return None
    return s[0].isupper()
