"""Crosscoders (Lindsey et al. 2024): one latent space read from and written to several sources at once.

A source is a layer of one model (cross-layer features) or the same hook point of several models (model
diffing). Inputs and reconstructions have shape ``(..., n_layers, d_in)``::

    pre = sum_l x[..., l, :] @ W_enc[l] + b_enc          W_enc [n_layers, d_in, d_sae], b_enc [d_sae]
    f   = relu(pre)
    out[..., l, :] = f @ W_dec[:, l, :] + b_dec[l]       W_dec [d_sae, n_layers, d_in], b_dec [n_layers, d_in]

The L1 penalty weights each latent by the *sum* of its per-source decoder norms, so a latent that writes to one
source only is cheaper than one that writes everywhere. :meth:`Crosscoder.source_norms` gives the per-source norms
used to sort latents into shared and source-specific ones when diffing models.

A crosscoder that reads later layers to reconstruct earlier ones is acausal, so it cannot be spliced into a single
forward pass; use it on cached activations (``encode`` / ``decode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from .base import Dictionary, DictionaryOptions, DictionaryOutput
from .errors import DictionaryConfigError, DictionaryShapeError
from .hooknames import to_canonical
from .registry import register


@dataclass
class CrosscoderOptions(DictionaryOptions):
    n_layers: int = 2
    """Number of sources (layers, or models) read and written."""
    hook_names: list[str] | None = None
    """Canonical hook point of each source, in order (may repeat when the sources are different models)."""
    source_names: list[str] | None = None
    """Optional label of each source (``"base"``, ``"chat"`` when diffing models)."""

    def __post_init__(self) -> None:
        if not isinstance(self.n_layers, int) or self.n_layers <= 0:
            raise DictionaryConfigError(f"n_layers must be a positive integer, got {self.n_layers!r}")
        for name in ("hook_names", "source_names"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != self.n_layers:
                    raise DictionaryConfigError(f"{name} has {len(value)} entries for n_layers={self.n_layers}")
                setattr(self, name, [to_canonical(v) if name == "hook_names" else v for v in value])


@register
class Crosscoder(Dictionary):
    """Acausal crosscoder with a ReLU and a decoder-norm-weighted L1 penalty (see module docstring)."""

    architecture = "crosscoder"
    sae_lens_name = "crosscoder"  # not a SAELens architecture; the layout follows the same conventions
    Options = CrosscoderOptions
    options: CrosscoderOptions
    config_defaults = {"apply_b_dec_to_input": False}

    def check_config(self) -> None:
        if self.cfg.transcoder or self.cfg.skip_connection:
            raise DictionaryConfigError("crosscoders reconstruct their inputs: no transcoder or skip options")

    def input_shape(self) -> tuple[int, ...]:
        return (self.options.n_layers, self.cfg.d_in)

    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape()

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        n, d, s = self.options.n_layers, self.cfg.d_in, self.cfg.d_sae
        return {"W_enc": (n, d, s), "b_enc": (s,), "W_dec": (s, n, d), "b_dec": (n, d)}

    def sae_lens_fields(self) -> dict[str, object]:
        return {"n_layers": self.options.n_layers}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.W_enc.copy_(self.W_dec.permute(1, 2, 0))

    def pre_acts(self, x: Float[Tensor, "... n_layers d_in"]) -> Float[Tensor, "... d_sae"]:
        xc = self._center(self._scale_in(x))  # (..., L, D)
        return torch.einsum("...ld,lds->...s", xc, self.W_enc) + self.b_enc

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return torch.relu(pre)

    def decode(self, feature_acts: Float[Tensor, "... d_sae"],
               x: Tensor | None = None) -> Float[Tensor, "... n_layers d_in"]:
        f = feature_acts.to(self.dtype)
        if self.feature_scale is not None:
            f = f * self.feature_scale
        out = torch.einsum("...s,sld->...ld", f, self.W_dec) + self.b_dec  # (..., L, D)
        return self._finish_decode(out, x)

    def source_norms(self) -> Float[Tensor, "d_sae n_layers"]:
        """Decoder norm of every latent in every source."""
        return self.W_dec.norm(dim=-1)

    def decoder_norms(self) -> Float[Tensor, " d_sae"]:
        """Sum over sources of the per-source decoder norms (the L1 weighting)."""
        return self.source_norms().sum(-1)

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        return {"l1": (out.feature_acts * self.decoder_norms()).sum(-1).mean()}

    def check_compatible(self, d_model_or_shape: int | tuple[int, ...] | torch.Size,
                         hook_name: str | None = None) -> None:
        if isinstance(d_model_or_shape, int) or len(d_model_or_shape) < 2:
            raise DictionaryShapeError(f"a crosscoder reads (..., n_layers, d_in) = (..., {self.input_shape()})")
        if tuple(d_model_or_shape[-2:]) != self.input_shape():
            raise DictionaryShapeError(
                f"crosscoder reads trailing shape {self.input_shape()} (n_layers, d_in), got "
                f"{tuple(d_model_or_shape[-2:])}"
            )
