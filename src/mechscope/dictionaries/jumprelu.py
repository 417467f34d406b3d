"""JumpReLU dictionary (Rajamanoharan et al. 2024): ``f = pre * [pre > theta]`` with a learned per-latent theta.

The threshold is trained through its logarithm (``log_threshold``; ``theta = exp(log_threshold) >= 0``). The step
has no useful gradient, so both the activation and the L0 penalty use a straight-through estimator: in the backward
pass the Dirac delta at the threshold is replaced by a rectangle kernel of width ``bandwidth``:

    d JumpReLU / d theta = -(theta / eps) * K((pre - theta) / eps)
    d step     / d theta = -(1 / eps)     * K((pre - theta) / eps),      K = rectangle on (-1/2, 1/2)

and the gradient to ``pre`` is the plain mask ``[pre > theta]`` (no estimator on the input side).
Files store ``threshold`` itself (SAELens / Gemma Scope layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .base import Dictionary, DictionaryOptions, DictionaryOutput
from .errors import DictionaryConfigError
from .registry import register


def rectangle(u: Tensor) -> Tensor:
    """Rectangle kernel: 1 on (-1/2, 1/2), else 0."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    return grad.reshape(-1, *shape).sum(0)


class JumpReLUFunction(torch.autograd.Function):
    """``pre * [pre > threshold]`` with the straight-through threshold gradient (see module docstring)."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = (pre > threshold) * grad
        grad_thr = -(threshold / eps) * rectangle((pre - threshold) / eps) * grad
        return grad_pre, _sum_to(grad_thr, threshold.shape), None


class StepFunction(torch.autograd.Function):
    """``[pre > threshold]`` with the straight-through threshold gradient; no gradient to ``pre``."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_thr = -(1.0 / eps) * rectangle((pre - threshold) / eps) * grad
        return None, _sum_to(grad_thr, threshold.shape), None


def jumprelu(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """JumpReLU with the straight-through estimator."""
    return JumpReLUFunction.apply(pre, threshold, bandwidth)


def step(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """Heaviside step with the straight-through estimator (the differentiable L0 count)."""
    return StepFunction.apply(pre, threshold, bandwidth)


@torch.no_grad()
def exact_log(threshold: Tensor) -> Tensor:
    """``log(threshold)`` nudged by ulps so that ``exp`` of the result gives back ``threshold`` where possible.

    Keeps save -> load -> save bit-exact for thresholds that were written as ``exp(log_threshold)``. Negative
    thresholds act like 0 (``pre * [pre > theta]`` is then a ReLU, as in SAELens) and map to ``-inf``.
    """
    t = threshold.clamp_min(0)
    log = t.log()
    for _ in range(8):
        e = log.exp()
        low, high = e < t, e > t
        if not bool((low | high).any()):
            break
        log = torch.where(low, torch.nextafter(log, torch.full_like(log, math.inf)), log)
        log = torch.where(high, torch.nextafter(log, torch.full_like(log, -math.inf)), log)
    return log


class ThresholdMixin:
    """Saves the ``log_threshold`` parameter as ``threshold`` and back (shared by JumpReLU SAEs and CLTs)."""

    def saved_tensors(self) -> dict[str, Tensor]:
        out = super().saved_tensors()  # type: ignore[misc]  # mixin: Dictionary follows in the MRO
        if "log_threshold" in out:
            out["threshold"] = out.pop("log_threshold").exp()
        return out

    def expected_saved_shapes(self, extras: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
        shapes = super().expected_saved_shapes(extras)  # type: ignore[misc]  # mixin: Dictionary follows
        if "log_threshold" in shapes:
            shapes["threshold"] = shapes.pop("log_threshold")
        return shapes

    @torch.no_grad()
    def load_saved_tensors(self, tensors: dict[str, Tensor]) -> None:
        tensors = dict(tensors)
        if "threshold" in tensors:
            dtype = self.dtype  # type: ignore[attr-defined]  # mixin: Dictionary's dtype
            tensors["log_threshold"] = exact_log(tensors.pop("threshold").to(dtype))
        super().load_saved_tensors(tensors)  # type: ignore[misc]  # mixin: Dictionary follows in the MRO


@dataclass
class JumpReLUOptions(DictionaryOptions):
    bandwidth: float = 0.05
    """Width of the rectangle kernel of the straight-through estimator (in pre-activation units)."""
    init_threshold: float = 0.01
    """Threshold every latent starts from."""

    def __post_init__(self) -> None:
        if not self.bandwidth > 0:
            raise DictionaryConfigError(f"bandwidth must be positive, got {self.bandwidth!r}")
        if not self.init_threshold > 0:
            raise DictionaryConfigError(f"init_threshold must be positive, got {self.init_threshold!r}")


@register
class JumpReLUDictionary(ThresholdMixin, Dictionary):
    """JumpReLU SAE / transcoder; loss terms add ``l0_ste`` (differentiable L0 through the step estimator)."""

    architecture = "jumprelu"
    sae_lens_name = "jumprelu"
    Options = JumpReLUOptions
    options: JumpReLUOptions

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**super().param_shapes(), "log_threshold": self.latent_shape()}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.log_threshold.fill_(math.log(self.options.init_threshold))

    @property
    def threshold(self) -> Tensor:
        """Per-latent threshold ``exp(log_threshold)``."""
        return self.log_threshold.exp()

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return jumprelu(pre, self.threshold, self.options.bandwidth)

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        count = step(out.pre_acts, self.threshold, self.options.bandwidth)
        return {"l0_ste": count.sum(tuple(range(-len(self.latent_shape()), 0))).mean()}
