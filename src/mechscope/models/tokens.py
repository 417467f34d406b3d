"""Text to tokens with explicit BOS handling and padding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor


@dataclass
class Tokens:
    """A batch of token ids; ``attention_mask`` is None when no row is padded."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"] | None = None

    @property
    def lengths(self) -> Int[Tensor, " batch"]:
        if self.attention_mask is None:
            return torch.full((self.input_ids.shape[0],), self.input_ids.shape[1], dtype=torch.long)
        return self.attention_mask.sum(-1)


Inputs = str | Sequence[str] | Tensor | Tokens


class TokenizerMissingError(ValueError):
    """Text was given to a model loaded without a tokenizer."""


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` puts the BOS token in front by itself (the model's training convention)."""
    if tokenizer is None or tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == tokenizer.bos_token_id


def encode(tokenizer, texts: Sequence[str], prepend_bos: bool, padding_side: str = "right") -> Tokens:
    """Tokenise without the tokenizer's own special tokens, then prepend BOS exactly when asked."""
    if tokenizer is None:
        raise TokenizerMissingError("this model has no tokenizer; pass token ids (a LongTensor) instead of text")
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("no prompts given: pass a string or a non-empty list of strings")
    rows: list[list[int]] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"prompt {i} is {type(text).__name__}, expected str")
        if text == "":
            raise ValueError(f"prompt {i} is empty; give at least one character of text")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if prepend_bos:
            if tokenizer.bos_token_id is None:
                raise ValueError("prepend_bos=True but this tokenizer has no BOS token")
            ids = [tokenizer.bos_token_id, *ids]
        rows.append(ids)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(0, len(r)) if padding_side == "right" else slice(width - len(r), width)
        input_ids[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return Tokens(input_ids, None if bool(mask.all()) else mask)
