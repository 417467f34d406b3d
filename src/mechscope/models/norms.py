"""Normalisation layers as linear maps with a frozen scale.

RMSNorm and LayerNorm are linear in their input once the per-position scale (``1/rms`` or ``1/std``) is fixed.
Direct logit attribution, per-head splits through Gemma's post-norms and lenses all need that linearisation:
``apply_linear(component, scale)`` maps one additive component of the norm's input to its share of the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn


@dataclass(frozen=True)
class NormSpec:
    kind: str  # "rms" | "rms_one_plus" | "layernorm"
    weight: Tensor | None
    bias: Tensor | None
    eps: float

    @classmethod
    def from_module(cls, module: nn.Module, kind: str, root: nn.Module | None = None) -> NormSpec:
        """The norm of ``module``; pass the model ``root`` to read weights of a module accelerate offloaded."""
        from .offload import materialise

        eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", None) or 1e-5
        if root is None:
            weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        else:
            weight, bias = materialise(root, module, "weight"), materialise(root, module, "bias")
        return cls(kind, weight, bias, float(eps))

    def scale(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... 1"]:
        """The per-position multiplier the norm applies to its (centred) input."""
        x = x.float()
        if self.kind == "layernorm":
            return torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps)
        return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def _gain(self, device: torch.device | None = None) -> Tensor | float:
        if self.weight is None:
            return 1.0
        w = self.weight.float().to(device) if device is not None else self.weight.float()
        return 1.0 + w if self.kind == "rms_one_plus" else w

    def apply_linear(self, component: Float[Tensor, "... d"], scale: Float[Tensor, "... 1"]) -> Float[Tensor, "... d"]:
        """The norm's output share of one additive input component (no bias: add :meth:`bias_term` once)."""
        c = component.float()
        if self.kind == "layernorm":
            c = c - c.mean(-1, keepdim=True)
        return c * scale * self._gain(c.device)  # the norm may sit on another device than the activations

    def bias_term(self) -> Tensor | float:
        return self.bias.float() if self.bias is not None else 0.0

    def __call__(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        return self.apply_linear(x, self.scale(x)) + self.bias_term()
