"""Activation normalisation factors and the per-feature scale that undoes L1 shrinkage.

- :func:`norm_scale`: the factor ``sqrt(d) / E||x||`` that brings activations to norm ``sqrt(d)`` on average
  (Anthropic, April 2024); store it with ``dictionary.set_activation_norm(scale)`` so it travels with the file.
- :func:`fit_feature_scale`: with the latents of a trained dictionary held fixed, the per-latent factors ``c``
  minimising ``||decode(f * c) - target||^2`` (plus a small ridge) by conjugate gradients on the normal
  equations. An L1 penalty shrinks activations towards zero; ``c > 1`` undoes it. Store it with
  ``dictionary.set_feature_scale(c)`` (or fold it into the decoder with ``fold_feature_scale``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from .errors import DictionaryConfigError, DictionaryShapeError

if TYPE_CHECKING:
    from .base import Dictionary

logger = logging.getLogger(__name__)


@torch.no_grad()
def norm_scale(acts: Float[Tensor, "... d"]) -> float:
    """``sqrt(d) / mean ||x||``: multiply activations by it to give them an average norm of ``sqrt(d)``."""
    mean_norm = acts.float().norm(dim=-1).mean()
    if not mean_norm > 0:
        raise DictionaryConfigError("activations have zero mean norm; cannot compute a normalisation factor")
    return float(acts.shape[-1] ** 0.5 / mean_norm)


def fit_feature_scale(d: Dictionary, x: Tensor, target: Tensor | None = None, *, ridge: float = 1e-6,
                      max_iter: int = 500, tol: float = 1e-10) -> Tensor:
    """Least-squares per-latent scale for fixed latents ``f = d.encode(x)``; returns shape ``d.latent_shape()``.

    Latents that never fire in ``x`` keep the factor 1. ``target`` defaults to ``x`` (autoencoders).
    """
    if target is None:
        if d.cfg.transcoder:
            raise DictionaryConfigError("a transcoder reconstructs another hook point: pass target=")
        target = x
    saved, d.feature_scale = d.feature_scale, None
    try:
        with torch.no_grad():
            f = d.encode(x).detach()
            base = d.decode(torch.zeros_like(f), x)
            residual = (target.to(base.dtype) - d.decode(f, x)).detach()  # error at c = 1

        def lin(c: Tensor) -> Tensor:
            return d.decode(f * c, x) - base

        zero = torch.zeros(d.latent_shape(), dtype=f.dtype, device=f.device)
        _, vjp = torch.func.vjp(lin, zero)

        def normal(v: Tensor) -> Tensor:
            return vjp(lin(v))[0] + ridge * v

        with torch.no_grad():
            delta = _conjugate_gradients(normal, vjp(residual)[0], max_iter, tol)
    finally:
        d.feature_scale = saved
    return (1 + delta).detach()


@torch.no_grad()
def _conjugate_gradients(op, b: Tensor, max_iter: int, tol: float) -> Tensor:
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum()
    b_norm = rs.sqrt().clamp_min(1e-30)
    for i in range(max_iter):
        ap = op(p)
        alpha = rs / (p * ap).sum().clamp_min(1e-30)
        x += alpha * p
        r -= alpha * ap
        rs_new = (r * r).sum()
        if rs_new.sqrt() / b_norm < tol:
            logger.debug("feature scale: conjugate gradients converged in %d steps", i + 1)
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


class ScaleMixin:
    """Activation normalisation and feature-scale buffers of :class:`~mechscope.dictionaries.base.Dictionary`.

    ``norm_scale_in`` / ``norm_scale_out`` / ``feature_scale`` are optional buffers saved with the model; the
    ``fold_*`` methods fold them into the weights (same function, plain SAELens layout).
    """

    if TYPE_CHECKING:  # provided by Dictionary, the only class this mixes into
        cfg: Any
        dtype: torch.dtype
        W_enc: Tensor
        W_dec: Tensor
        b_dec: Tensor
        W_skip: Any

        def input_shape(self) -> tuple[int, ...]: ...
        def output_shape(self) -> tuple[int, ...]: ...
        def latent_shape(self) -> tuple[int, ...]: ...

    def _full(self, value: Tensor | float, shape: tuple[int, ...], name: str) -> Tensor:
        t = torch.as_tensor(value, dtype=self.dtype, device=self.W_dec.device)
        try:
            t = torch.broadcast_to(t, shape).clone()
        except RuntimeError:
            raise DictionaryShapeError(f"{name} must broadcast to {shape}, got shape {tuple(t.shape)}") from None
        if not torch.isfinite(t).all() or (t == 0).any():
            raise DictionaryConfigError(f"{name} must be finite and non-zero")
        return t

    def set_activation_norm(self, scale_in: Tensor | float, scale_out: Tensor | float | None = None) -> None:
        """Store the factor inputs are multiplied by (and outputs divided by) before/after the dictionary.

        Autoencoders share one factor; transcoders pass ``scale_out`` for the output hook point.
        ``mechscope.dictionaries.scale.norm_scale`` computes the usual ``sqrt(d) / mean ||x||`` factor.
        """
        if scale_out is None:
            if self.cfg.transcoder:
                raise DictionaryConfigError("a transcoder needs scale_out for its output hook point")
            scale_out = scale_in
        self.norm_scale_in = self._full(scale_in, self.input_shape(), "scale_in")
        self.norm_scale_out = self._full(scale_out, self.output_shape(), "scale_out")

    def set_feature_scale(self, scale: Tensor) -> None:
        """Store a per-latent factor applied to feature activations before decoding."""
        self.feature_scale = self._full(scale, self.latent_shape(), "feature_scale")

    @torch.no_grad()
    def fold_activation_norm(self) -> None:
        """Fold ``norm_scale_in/out`` into the weights: same function, no normalisation buffers left."""
        if self.norm_scale_in is None:
            return
        s_in, s_out = self.norm_scale_in, self.norm_scale_out
        self.W_enc.mul_(s_in.unsqueeze(-1))
        self.W_dec.div_(s_out)
        self.b_dec.div_(s_out)
        if self.cfg.skip_connection:
            self.W_skip.mul_(s_in.unsqueeze(-2)).div_(s_out.unsqueeze(-1))
        self._fold_extra_input_scale(s_in)
        self.norm_scale_in = self.norm_scale_out = None

    def _fold_extra_input_scale(self, s_in: Tensor) -> None:
        """Hook for architectures with more input-side parameters (CLT ``b_in``)."""

    @torch.no_grad()
    def fold_feature_scale(self) -> None:
        """Fold ``feature_scale`` into the decoder rows: same reconstruction, no scale buffer left."""
        if self.feature_scale is None:
            return
        c = self.feature_scale
        self.W_dec.mul_(c.reshape(*c.shape, *[1] * (self.W_dec.dim() - c.dim())))
        self.feature_scale = None

