"""What the feature tools read: an encode function at one or more hook points, and a corpus as token batches.

``features`` works from per-hook-point encode functions, not from dictionary classes: a :class:`FeatureSource`
names the hook point(s) read and a function mapping activations to feature activations. SAEs, transcoders,
crosscoders and cross-layer transcoders all become one with :meth:`FeatureSource.from_dictionary`::

    src = FeatureSource.from_dictionary(sae, model)     # validates widths and hook names against the model
    for tokens in token_batches(model, texts, batch_size=8, max_length=128): ...
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..models.tokens import Tokens


class FeatureError(ValueError):
    """A feature tool was given something it cannot use (index out of range, empty corpus, mismatched hook)."""


@dataclass
class FeatureSource:
    """Feature activations as a function of the activations at ``hook_names``."""

    hook_names: list[str]
    """Hook points read, in order. Several names (crosscoders, CLTs) are stacked on dim -2: ``(..., L, D)``."""
    encode: Callable[[Tensor], Tensor]
    """``(N, D)`` or ``(N, L, D)`` activations -> ``(N, ...)`` feature activations (flattened to ``(N, S)``)."""
    d_sae: int
    """Number of features after flattening."""
    dictionary: Any = None
    """The dictionary behind ``encode``, when there is one (decoder rows for logit effects and steering)."""

    def check_feature(self, feature: int) -> int:
        """``feature`` as an int, or :class:`FeatureError` naming the valid range."""
        try:
            f = operator.index(feature)
        except TypeError:
            raise FeatureError(f"feature index must be an integer, got {feature!r}") from None
        if not 0 <= f < self.d_sae:
            raise FeatureError(f"feature {f} is out of range: this dictionary has {self.d_sae} features "
                               f"(valid indices 0..{self.d_sae - 1})")
        return f

    @torch.no_grad()
    def __call__(self, acts: Float[Tensor, "... d"]) -> Float[Tensor, "... d_sae"]:
        lead = acts.shape[:-2] if len(self.hook_names) > 1 else acts.shape[:-1]
        n_trail = 2 if len(self.hook_names) > 1 else 1
        flat = acts.reshape(-1, *acts.shape[-n_trail:])  # (N, [L,] D)
        return self.encode(flat).reshape(*lead, self.d_sae).float()  # (..., S)

    @classmethod
    def from_dictionary(cls, d: Any, model: Any = None, hook_name: str | None = None, *,
                        allow_other_model: bool = False) -> FeatureSource:
        """A source for any mechscope dictionary; checks widths, hook points and the recorded model name against
        ``model`` when given (``allow_other_model=True`` accepts a dictionary recorded for another model)."""
        from ..dictionaries import Crosscoder, CrossLayerTranscoder
        from ..dictionaries.splice import check_model_compatible

        if isinstance(d, CrossLayerTranscoder):
            names = [f"blocks.{layer}.mlp_in" for layer in d.layers]
        elif isinstance(d, Crosscoder):
            names = list(d.options.hook_names or [])
            if len(set(names)) != len(names) or not names:
                raise FeatureError("a crosscoder over several models (or without recorded hook_names) has no single "
                                   "model to read from; build a FeatureSource with your own encode function")
        else:
            name = hook_name or d.hook_name
            if name is None:
                raise FeatureError("the dictionary records no hook_name: pass hook_name=")
            names = [name]
        if model is not None:
            names = [model.resolve(n).name for n in names]  # unknown hook points raise with close matches
            check_model_compatible(model, d, allow_other_model=allow_other_model)
            if hook_name is not None:
                d.check_compatible(d.d_in, hook_name)
        d_sae = int(torch.Size(d.latent_shape()).numel())
        return cls(names, d.encode, d_sae, d)


def _rows(model: Any, item: Any, max_length: int, split: bool = True) -> Iterator[list[int]]:
    """Token rows (at most ``max_length`` long) from one corpus item: text, ids or :class:`Tokens`."""
    if isinstance(item, str):
        if not item:
            return
        ids = model.tokenizer(item, add_special_tokens=False)["input_ids"]
        bos = model.tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
        step = max_length - (bos is not None)
        for i in range(0, len(ids), step):
            chunk = ids[i:i + step]
            yield ([bos] if bos is not None else []) + chunk
            if not split:
                break
        return
    if isinstance(item, Tokens):
        mask = item.attention_mask
        for r, row in enumerate(item.input_ids):
            keep = row if mask is None else row[mask[r].bool()]
            if keep.numel():
                yield keep[:max_length].tolist()
        return
    if isinstance(item, Tensor):
        t = item.unsqueeze(0) if item.ndim == 1 else item
        for row in t:
            if row.numel():
                yield row[:max_length].tolist()
        return
    raise FeatureError(f"corpus items must be str, token-id tensors or Tokens, got {type(item).__name__}")


def token_batches(model: Any, corpus: Iterable[Any], batch_size: int = 8, max_length: int = 128,
                  max_tokens: int | None = None, split_long: bool = True) -> Iterator[Tokens]:
    """Right-padded :class:`Tokens` batches (mask always set) from texts or ids; raises if there are no tokens.

    Texts longer than ``max_length`` tokens become several rows (``split_long``) or are cut to their first row.
    """
    if isinstance(corpus, (str, Tokens, Tensor)):
        corpus = [corpus]
    max_length = min(max_length, model.cfg.n_ctx)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else 0
    pad = pad if pad is not None else 0
    rows: list[list[int]] = []
    seen = 0

    def flush() -> Tokens:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        rows.clear()
        return Tokens(ids.to(model.cfg.device), mask.to(model.cfg.device))

    for item in corpus:
        for row in _rows(model, item, max_length, split_long):
            if max_tokens is not None and seen + len(row) > max_tokens:
                row = row[:max_tokens - seen]
            if not row:
                continue
            rows.append(row)
            seen += len(row)
            if len(rows) == batch_size:
                yield flush()
            if max_tokens is not None and seen >= max_tokens:
                break
        if max_tokens is not None and seen >= max_tokens:
            break
    if rows:
        yield flush()
    if seen == 0:
        raise FeatureError("the corpus has no tokens: give at least one non-empty text or token row")
