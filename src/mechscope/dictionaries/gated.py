"""Gated dictionary (Rajamanoharan et al. 2024): a gate decides *which* latents fire, a magnitude path *how much*.

With ``x_c = x_n - b_dec``::

    pi_gate = x_c @ W_enc + b_gate                      # which latents are active
    pi_mag  = x_c @ (W_enc * exp(r_mag)) + b_mag         # r_mag shares W_enc between the two paths
    f       = [pi_gate > 0] * relu(pi_mag)

Training losses (:meth:`GatedDictionary.sparsity_terms`): ``l1`` on ``relu(pi_gate)`` (weighted by decoder norms
with ``l1_weighting="decoder_norm"``) and ``aux_recon``, the reconstruction from ``relu(pi_gate)`` through a
*detached* decoder, which trains the gate path. Keys ``b_gate``, ``b_mag``, ``r_mag``; no ``b_enc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from .base import Dictionary, DictionaryOutput, row_mean
from .errors import DictionaryConfigError
from .registry import register
from .relu import ReLUOptions, l1_penalty


@dataclass
class GatedOptions(ReLUOptions):
    """Gated options: the L1 weighting of the gate penalty (``unit_decoder`` or ``decoder_norm``)."""


@register
class GatedDictionary(Dictionary):
    """Gated SAE (see module docstring)."""

    architecture = "gated"
    sae_lens_name = "gated"
    Options = GatedOptions
    options: GatedOptions

    def check_config(self) -> None:
        if self.cfg.transcoder:
            raise DictionaryConfigError("gated transcoders are not supported; use relu, topk or jumprelu")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        del shapes["b_enc"]
        s = self.latent_shape()
        return {**shapes, "b_gate": s, "r_mag": s, "b_mag": s}

    def _paths(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xc = self._center(self._scale_in(x))  # (..., D)
        gate = xc @ self.W_enc + self.b_gate  # (..., S)
        mag = xc @ (self.W_enc * self.r_mag.exp()) + self.b_mag  # (..., S)
        return gate, mag

    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """The magnitude-path pre-activation (what SAELens reports as ``hidden_pre``)."""
        return self._paths(x)[1]

    def activate(self, pre: Tensor) -> Tensor:
        raise DictionaryConfigError("a gated dictionary needs both paths: use encode(x), not activate(pre)")

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        gate, mag = self._paths(x)
        return (gate > 0).to(mag.dtype) * mag.relu(), mag

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        gate_act = self._paths(x)[0].relu()  # (..., S)
        norms = self.decoder_norms() if self.options.l1_weighting == "decoder_norm" else None
        via_gate = gate_act @ self.W_dec.detach() + self.b_dec.detach()
        if self.norm_scale_out is not None:
            via_gate = via_gate / self.norm_scale_out
        row_err = (via_gate - target).pow(2).sum(-1)  # (N,)
        aux = row_mean(row_err, row_weight)
        return {"l1": l1_penalty(gate_act, norms, nonnegative=True), "aux_recon": aux}
