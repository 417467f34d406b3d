"""Attention patterns as a result object: one layer's per-head pattern over a prompt's tokens, with a viewer.

    >>> _, cache = model.run_with_cache(prompt, names=["blocks.3.attn.pattern"])
    >>> cache.attention(3)            # in a notebook: thumbnails per head, click one, hover cells and tokens
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor


@dataclass
class AttentionPattern:
    """``pattern[head, query, key]`` of one layer for one prompt (padding removed), with its tokens."""

    pattern: Float[Tensor, "heads query key"]
    tokens: list[str]
    """The prompt's tokens as strings, one per position."""
    layer: int
    prompt: int = 0

    def __post_init__(self) -> None:
        h, q, k = self.pattern.shape
        if q != k or q != len(self.tokens):
            raise ValueError(f"pattern {tuple(self.pattern.shape)} does not match {len(self.tokens)} tokens")

    def top(self, head: int, k: int = 5) -> list[tuple[str, str, float]]:
        """The ``k`` strongest (query token, key token, weight) pairs of ``head``, BOS/first-position sink left out."""
        p = self.pattern[head, :, 1:].float() if self.pattern.shape[-1] > 1 else self.pattern[head].float()
        off = 1 if self.pattern.shape[-1] > 1 else 0
        vals, idx = p.flatten().topk(min(k, p.numel()))
        return [(self.tokens[int(i) // p.shape[1]], self.tokens[int(i) % p.shape[1] + off], float(v))
                for v, i in zip(vals, idx)]

    def view(self):
        """The interactive per-head viewer (:func:`mechscope.display.attention`)."""
        from .. import display

        title = f"attention patterns, layer {self.layer}" + (f", prompt {self.prompt}" if self.prompt else "")
        if self.pattern.numel() == 0:
            return display.empty(title, "no tokens or no heads")
        return display.attention(self.pattern, self.tokens, head_labels=[f"L{self.layer}H{h}" for h in
                                                                          range(self.pattern.shape[0])], title=title)

    def _repr_html_(self) -> str:
        return self.view().html()
