"""Initialisation from data: the geometric median (for ``b_dec``) and the activation normalisation factor."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


@torch.no_grad()
def geometric_median(x: Float[Tensor, "n d"], *, iters: int = 100, tol: float = 1e-6) -> Float[Tensor, " d"]:
    """The point minimising the sum of Euclidean distances to the rows of ``x`` (Weiszfeld's algorithm).

    More robust than the mean to the heavy-tailed rows of residual streams; used to initialise ``b_dec``.
    """
    x = x.double()
    guess = x.mean(0)  # (D,)
    for _ in range(iters):
        dist = (x - guess).norm(dim=1).clamp_min(1e-8)  # (N,)
        w = 1.0 / dist
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - guess).norm() <= tol * new.norm().clamp_min(1e-12):
            guess = new
            break
        guess = new
    return guess.float()


@torch.no_grad()
def geometric_median_per_source(x: Tensor) -> Tensor:
    """Geometric median of rows ``(N, D)``, or per source for stacked rows ``(N, L, D)`` -> ``(L, D)``."""
    if x.dim() == 2:
        return geometric_median(x)
    return torch.stack([geometric_median(x[:, i]) for i in range(x.shape[1])])


@torch.no_grad()
def norm_factor(x: Tensor) -> Tensor:
    """Factor(s) giving rows a mean norm of sqrt(d): a scalar for ``(N, D)``, one per source for ``(N, L, D)``."""
    norms = x.float().norm(dim=-1).mean(0)  # () or (L,)
    return (x.shape[-1] ** 0.5 / norms.clamp_min(1e-12)).unsqueeze(-1) if x.dim() == 3 else x.shape[-1] ** 0.5 / norms
