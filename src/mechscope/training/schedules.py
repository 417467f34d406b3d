"""Learning-rate and sparsity-coefficient schedules (pure functions of the step, so nothing to checkpoint)."""

from __future__ import annotations

from .config import OptimConfig


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warmup, flat, linear decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay_steps = int(cfg.decay_fraction * total_steps)
    decay_start = total_steps - decay_steps
    if decay_steps and step >= decay_start:
        progress = (step - decay_start + 1) / decay_steps
        return 1.0 - (1.0 - cfg.final_lr_fraction) * progress
    return 1.0


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear ramp from 1/warmup_steps to 1 over ``warmup_steps`` steps (1 with no warmup)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
