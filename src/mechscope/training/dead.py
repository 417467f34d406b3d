"""Dead-latent tracking and resampling.

:class:`DeadLatentTracker` counts, per latent, the rows seen since it last fired; a latent is dead once that count
reaches ``dead_after_tokens``. The TopK family hands the dead mask to the dictionary's AuxK loss; the L1 family
re-initialises dead latents with :func:`resample_dead` (Anthropic, "Towards Monosemanticity", simplified): each
dead latent gets, as decoder direction, the normalised error of an input drawn with probability proportional to
its squared reconstruction error, and a scaled copy of it as encoder column; Adam's moments for it are reset.
"""

from __future__ import annotations

import logging

import torch
from jaxtyping import Bool
from torch import Tensor

from ..dictionaries import Dictionary

log = logging.getLogger(__name__)


class DeadLatentTracker:
    """Rows since each latent last fired."""

    def __init__(self, latent_shape: tuple[int, ...], dead_after_tokens: int, device: torch.device | str = "cpu"):
        self.since = torch.zeros(latent_shape, dtype=torch.long, device=device)
        self.dead_after = dead_after_tokens

    def update(self, fired: Bool[Tensor, " ..."], n_rows: int) -> None:
        """Advance by ``n_rows`` rows; latents with ``fired`` True reset to 0."""
        self.since += n_rows
        self.since[fired] = 0

    def dead_mask(self) -> Bool[Tensor, " ..."]:
        return self.since >= self.dead_after

    def dead_fraction(self) -> float:
        return float(self.dead_mask().float().mean())


@torch.no_grad()
def resample_dead(d: Dictionary, dead: Tensor, x: Tensor, target: Tensor, optimizer: torch.optim.Optimizer,
                  *, scale: float = 0.2, generator: torch.Generator | None = None) -> int:
    """Re-initialise the dead latents of a plain (2-D weight) dictionary from high-error inputs; returns the count."""
    idx = dead.nonzero().flatten()
    if idx.numel() == 0 or d.W_dec.dim() != 2 or d.W_enc.dim() != 2:
        return 0
    err = target - d(x).reconstruction  # (N, D)
    weights = err.pow(2).sum(-1)
    if not bool(weights.sum() > 0):
        return 0
    rows = torch.multinomial(weights, idx.numel(), replacement=True, generator=generator)
    directions = err[rows] / err[rows].norm(dim=-1, keepdim=True).clamp_min(1e-8)  # (n_dead, D)
    alive = ~dead
    enc_norm = d.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    d.W_dec[idx] = directions
    d.W_enc[:, idx] = directions.T * enc_norm * scale
    if hasattr(d, "b_enc"):
        d.b_enc[idx] = 0.0
    for p in d.parameters():
        state = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in state:
                continue
            if p is d.W_dec:
                state[key][idx] = 0.0
            elif p is d.W_enc:
                state[key][:, idx] = 0.0
            elif p.shape == dead.shape:
                state[key][idx] = 0.0
    log.info("resampled %d dead latents", idx.numel())
    return int(idx.numel())
