"""Trainer configuration: small composed groups, every field documented (the CLI's ``--help`` comes from here).

- :class:`DictionarySpec`: one dictionary to train (architecture, hook points, width, sparsity).
- :class:`OptimConfig`: Adam, learning-rate warmup and decay, gradient clipping.
- :class:`SparsityConfig`: sparsity-coefficient warmup and the AuxK weight.
- :class:`DeadLatentConfig`: when a latent counts as dead, and resampling for the L1 family.
- :class:`LoopConfig`: steps, seed, logging and checkpoint cadence.
- :class:`TrainConfig`: the four groups above together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..validation import check_finite_fields

#: Default sparsity coefficient per loss term family (with activations normalised to norm sqrt(d_in)).
DEFAULT_COEFFICIENTS = {"l1": 5.0, "l0_ste": 1.0}
L1_FAMILY = ("relu", "gated", "transcoder", "skip_transcoder", "crosscoder")
TOPK_FAMILY = ("topk", "batchtopk")


def check_row_norm_cap(owner: str, value: object) -> None:
    """``value`` must be None or a finite number >= 1 (``LoopConfig.row_norm_cap``, also checked by sets.SetConfig
    before a long build starts); ValueError naming ``owner`` otherwise."""
    if value is not None and not (isinstance(value, (int, float)) and 1 <= value < float("inf")):
        raise ValueError(f"{owner}.row_norm_cap must be a finite number >= 1 (a multiple of the median row norm) "
                         f"or None, got {value!r}")


def _positive(obj: object, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = value >= 0 if allow_zero else value > 0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{type(obj).__name__}.{name} must be a number {bound}, got {value!r}")


@dataclass
class DictionarySpec:
    """One dictionary to train from the harvested activations."""

    arch: str = "topk"
    """Architecture: relu, topk, batchtopk, jumprelu, gated, transcoder, skip_transcoder, crosscoder, clt."""
    hook: str = "blocks.0.resid_post"
    """Hook point read; several comma-separated points are stacked (crosscoders, CLTs)."""
    hook_out: str | None = None
    """Hook point(s) reconstructed by a transcoder (comma-separated for CLTs); None for autoencoders."""
    expansion: int = 16
    """Latents per input dimension: d_sae = expansion * d_in (ignored when d_sae is set)."""
    d_sae: int | None = None
    """Number of latents (overrides expansion)."""
    k: int = 32
    """Active latents per row (TopK, BatchTopK; also the activation of TopK transcoders)."""
    activation: str | None = None
    """Activation of a transcoder (relu, topk, batchtopk, jumprelu) or CLT (relu, jumprelu)."""
    sparsity_coefficient: float | None = None
    """Weight of the sparsity term (L1 or straight-through L0); None uses the per-architecture default."""
    lr: float | None = None
    """Learning rate of this dictionary; None uses OptimConfig.lr."""
    name: str | None = None
    """Folder name of the trained dictionary in the run; None derives it from arch and hook."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further keywords for ``mechscope.dictionaries.create`` (bandwidth, l1_weighting ...)."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        from ..dictionaries import names

        if self.arch not in names() and self.arch != "clt":
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(names())}")
        if not self.hook:
            raise ValueError("hook must name at least one hook point")
        _positive(self, "expansion", "k")
        if self.d_sae is not None:
            _positive(self, "d_sae")
        if self.sparsity_coefficient is not None:
            _positive(self, "sparsity_coefficient", allow_zero=True)
        if self.lr is not None:
            _positive(self, "lr")
        transcoding = self.arch in ("transcoder", "skip_transcoder", "clt")
        if transcoding and not self.hook_out:
            raise ValueError(f"{self.arch} reconstructs another hook point: set hook_out")
        if not transcoding and self.hook_out:
            raise ValueError(f"{self.arch} reconstructs its input: hook_out applies to transcoders only")

    @property
    def hooks_in(self) -> list[str]:
        return [h.strip() for h in self.hook.split(",") if h.strip()]

    @property
    def hooks_out(self) -> list[str]:
        return [h.strip() for h in (self.hook_out or self.hook).split(",") if h.strip()]

    @property
    def family(self) -> str:
        """``topk`` (dead latents get AuxK), ``l1`` (dead latents get resampled) or ``other``."""
        act = self.activation or ("relu" if self.arch in ("transcoder", "skip_transcoder", "clt") else self.arch)
        if act in TOPK_FAMILY:
            return "topk"
        if act in ("relu", "gated", "crosscoder"):
            return "l1"
        return "other"

    def folder_name(self) -> str:
        return self.name or re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.arch}_{self.hook}")


@dataclass
class OptimConfig:
    """Adam with linear warmup and a linear decay to ``final_lr_fraction`` over the last part of training."""

    lr: float = 4e-4
    """Peak learning rate."""
    beta1: float = 0.9
    """Adam beta1."""
    beta2: float = 0.999
    """Adam beta2."""
    eps: float = 1e-8
    """Adam epsilon."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warmup from 0."""
    decay_fraction: float = 0.2
    """Fraction of the steps at the end over which the learning rate decays linearly."""
    final_lr_fraction: float = 0.0
    """Learning rate at the last step, as a fraction of the peak."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        _positive(self, "lr", "eps")
        _positive(self, "warmup_steps", "grad_clip", "final_lr_fraction", allow_zero=True)
        for name in ("beta1", "beta2", "decay_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"OptimConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")


@dataclass
class SparsityConfig:
    """Sparsity-coefficient warmup and auxiliary-loss weights."""

    warmup_steps: int = 0
    """Steps over which the sparsity coefficient grows linearly from 0 to its value."""
    auxk_coefficient: float = 1 / 32
    """Weight of the AuxK loss on dead latents (TopK family)."""
    aux_recon_coefficient: float = 1.0
    """Weight of the Gated SAE's auxiliary reconstruction loss."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        _positive(self, "warmup_steps", "auxk_coefficient", "aux_recon_coefficient", allow_zero=True)


@dataclass
class DeadLatentConfig:
    """Dead-latent tracking (a latent is dead once it has not fired for ``dead_after_tokens`` rows)."""

    dead_after_tokens: int | None = None
    """Rows without firing after which a latent counts as dead; None: a tenth of the run's rows, at most 10 M
    (Gao et al.'s value), so that AuxK and resampling act in short runs too."""
    resample_every: int = 0
    """L1 family: resample dead latents every this many steps (0 disables resampling)."""
    resample_scale: float = 0.2
    """Resampled encoder columns get this fraction of the mean live encoder norm."""
    decoder_constraint: bool = True
    """Keep decoder rows at unit norm where the method uses it (L1 with plain weighting, TopK, JumpReLU)."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        if self.dead_after_tokens is not None:
            _positive(self, "dead_after_tokens")
        _positive(self, "resample_every", "resample_scale", allow_zero=True)


@dataclass
class LoopConfig:
    """Length of the run, its seed, logging and checkpointing."""

    steps: int = 1000
    """Training steps (each step consumes one batch of StoreConfig.batch_size rows per rank)."""
    seed: int = 0
    """Seed of dictionary initialisation and resampling (the data stream has its own seed)."""
    log_every: int = 10
    """Write a metrics.jsonl line and refresh the progress bar every this many steps."""
    checkpoint_every: int = 0
    """Write an atomic checkpoint every this many steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the oldest are removed)."""
    normalize_activations: bool = True
    """Scale activations to mean norm sqrt(d) for training (the factor is saved with the dictionary)."""
    init_b_dec: bool = True
    """Initialise b_dec at the geometric median of the first batch."""
    init_skip_lstsq: bool = True
    """Skip transcoders: start W_skip at the least-squares linear map from input to output on the first batch, so
    the latents begin by modelling what a linear map cannot (instead of first having to learn that map)."""
    center_transcoder_input: bool = True
    """Transcoders: subtract the geometric median of the first batch's inputs before encoding (folded into b_enc
    when saved). An autoencoder centres its input with b_dec; a transcoder's b_dec is an output bias, so without
    this the input's large mean (a normalised MLP input sits far from the origin) shifts every pre-activation by a
    fixed amount and latents that start on the wrong side of it never fire."""
    row_norm_cap: float | None = 8.0
    """Cap on a row's weight in the reconstruction loss: a target row whose norm exceeds this multiple of the batch's
    median row norm counts like a row of that norm with the same relative error (``trainer.capped_row_weights``).
    Some MLPs write massive activations (norms 30-100x the median) on a few tokens; uncapped, those rows make up
    most of each batch's summed squared error and the dictionary learns little else (at layer 11 of smollm2-135m
    uncapped: CE loss recovered 0.44 with 48% dead latents; capped at 8: 0.79 with 1%). Rows within the cap keep
    weight 1, so on ordinary data this changes nothing. ``None``: the plain mean over rows."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        _positive(self, "steps", "log_every", "keep_checkpoints")
        check_row_norm_cap("LoopConfig", self.row_norm_cap)
        _positive(self, "checkpoint_every", allow_zero=True)


@dataclass
class TrainConfig:
    """Everything about a training run except the data and the dictionaries."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning-rate schedule."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    """Sparsity schedule and auxiliary losses."""
    dead: DeadLatentConfig = field(default_factory=DeadLatentConfig)
    """Dead-latent handling."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    """Steps, seed, logging, checkpoints."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        for name, cls in (("optim", OptimConfig), ("sparsity", SparsityConfig), ("dead", DeadLatentConfig),
                          ("loop", LoopConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**value))
            elif not isinstance(value, cls):
                raise TypeError(f"TrainConfig.{name} must be a {cls.__name__}")
