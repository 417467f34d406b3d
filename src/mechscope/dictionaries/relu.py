"""ReLU dictionary with an L1 penalty (the "standard" SAE).

Two L1 variants (``l1_weighting`` option):

- ``"unit_decoder"``: plain ``sum |f|``; the trainer keeps decoder rows at unit norm
  (:meth:`Dictionary.normalize_decoder_` after each step, :meth:`Dictionary.remove_parallel_decoder_grad_` before).
- ``"decoder_norm"``: ``sum f_i * ||W_dec_i||`` (Anthropic, April 2024 update); decoder norms stay free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from .base import Dictionary, DictionaryOptions, DictionaryOutput
from .errors import DictionaryConfigError
from .registry import register

L1_WEIGHTINGS = ("unit_decoder", "decoder_norm")


@dataclass
class ReLUOptions(DictionaryOptions):
    l1_weighting: str = "unit_decoder"
    """``unit_decoder`` (plain L1, decoder rows kept at unit norm) or ``decoder_norm`` (L1 weighted by norms)."""

    def __post_init__(self) -> None:
        if self.l1_weighting not in L1_WEIGHTINGS:
            raise DictionaryConfigError(f"l1_weighting must be one of {L1_WEIGHTINGS}, got {self.l1_weighting!r}")


def l1_penalty(feature_acts: Tensor, decoder_norms: Tensor | None, nonnegative: bool = False) -> Tensor:
    """Mean over rows of ``sum_i |f_i| (* ||W_dec_i||)``.

    Summed over rows first and weighted per latent after, so no (rows, d_sae) product with the norms is formed or
    differentiated; ``nonnegative=True`` (ReLU outputs) also skips ``abs``. Both matter on CPU, where these
    elementwise passes over the activations cost about a tenth of a training step.
    """
    f = feature_acts if nonnegative else feature_acts.abs()
    per_latent = f.reshape(-1, f.shape[-1]).sum(0)  # (S,)
    rows = f.numel() // max(1, f.shape[-1])
    total = per_latent @ decoder_norms if decoder_norms is not None else per_latent.sum()
    return total / rows


@register
class ReLUDictionary(Dictionary):
    """``f = relu(pre)``; sparsity from an L1 penalty (see module docstring)."""

    architecture = "relu"
    sae_lens_name = "standard"
    Options = ReLUOptions
    options: ReLUOptions

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return torch.relu(pre)

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        norms = self.decoder_norms() if self.options.l1_weighting == "decoder_norm" else None
        return {"l1": l1_penalty(out.feature_acts, norms, nonnegative=True)}  # relu outputs
