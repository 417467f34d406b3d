"""Normalisation layers as linear maps with a frozen scale.

RMSNorm and LayerNorm are linear in their input once the per-position scale (``1/rms`` or ``1/std``) is fixed.
Direct logit attribution, per-head splits through Gemma's post-norms and lenses all need that linearisation:
``apply_linear(component, scale)`` maps one additive component of the norm's input to its share of the output.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor, nn

if TYPE_CHECKING:
    from .hooked import HookedModel


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


def norm_modules(model: HookedModel) -> dict[str, nn.Module]:
    """Every normalisation module of the HF model (class name containing ``Norm``), by module path."""
    return {name: m for name, m in model.hf.named_modules()
            if name and ("norm" in type(m).__name__.lower()) and not list(m.children())}


_MLP_IN_NORMS: weakref.WeakKeyDictionary[HookedModel, dict[int, tuple[str, NormSpec]]] = weakref.WeakKeyDictionary()


def mlp_in_norms(model: HookedModel) -> dict[int, tuple[str, NormSpec]]:
    """Layer -> (module path, spec) of the norm whose output is ``blocks.L.mlp_in``, found once per model by running
    it on three tokens and matching every norm module's output against the hook point."""
    if model in _MLP_IN_NORMS:
        return _MLP_IN_NORMS[model]
    norms = norm_modules(model)
    outs: dict[str, Tensor] = {}
    handles = []
    for name, m in norms.items():
        handles.append(m.register_forward_hook(lambda mod, a, o, name=name: outs.__setitem__(name, o.detach())))
    try:
        names = [f"blocks.{l}.mlp_in" for l in range(model.cfg.n_layers)]
        _, cache = model.run_with_cache(torch.tensor([[1, 2, 3]]), names=names)
    finally:
        for h in handles:
            h.remove()
    found: dict[int, tuple[str, NormSpec]] = {}
    for l in range(model.cfg.n_layers):
        x = cache[f"blocks.{l}.mlp_in"]
        hits = [n for n, o in outs.items() if o.shape == x.shape and torch.equal(o, x)]
        if not hits:
            raise ValueError(f"no norm module produces blocks.{l}.mlp_in (this family has no pre-MLP norm)")
        found[l] = (hits[0], NormSpec.from_module(norms[hits[0]], model.adapter.norm_kind))
    _MLP_IN_NORMS[model] = found
    return found


def mlp_in_norm(model: HookedModel, layer: int) -> tuple[str, NormSpec]:
    """The (module path, spec) of the norm whose output is ``blocks.layer.mlp_in``; see :func:`mlp_in_norms`."""
    return mlp_in_norms(model)[layer]
