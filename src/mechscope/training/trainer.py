"""One dictionary under training: its objective, optimiser, schedules, decoder constraint and dead latents.

:class:`DictionaryTrainer` does one step at a time in small named methods (``prepare`` -> ``loss`` -> ``backward``
-> ``update``) instead of one closure; :mod:`.loop` drives several of them from one activation stream.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from .. import dictionaries
from ..dictionaries import BatchTopKDictionary, Dictionary
from . import sparse_topk
from .config import DEFAULT_COEFFICIENTS, DictionarySpec, TrainConfig
from .dead import DeadLatentTracker, resample_dead
from .distributed import DistInfo, all_gather_rows, all_reduce, broadcast_parameters
from .init import geometric_median, geometric_median_per_source, norm_factor
from .schedules import lr_factor, warmup_factor

log = logging.getLogger(__name__)


def build_dictionary(spec: DictionarySpec, widths: dict[str, int], model_name: str | None = None) -> Dictionary:
    """A freshly initialised dictionary for ``spec`` given the width of each hook point."""
    d_in = widths[spec.hooks_in[0]]
    d_sae = spec.d_sae or spec.expansion * d_in
    kw: dict[str, Any] = dict(spec.options)
    kw.setdefault("model_name", model_name)
    act = spec.activation or spec.arch
    if spec.arch == "clt":
        kw.update(n_layers=len(spec.hooks_in), d_out=widths[spec.hooks_out[0]])
        if spec.activation:
            kw["activation"] = spec.activation
        return dictionaries.create("clt", d_in=d_in, d_sae=d_sae, **kw)
    if spec.arch == "crosscoder":
        kw.update(n_layers=len(spec.hooks_in), hook_names=spec.hooks_in)
    else:
        kw["hook_name"] = spec.hooks_in[0]
    if spec.arch in ("transcoder", "skip_transcoder"):
        kw.update(hook_name_out=spec.hooks_out[0], d_out=widths[spec.hooks_out[0]],
                  activation=spec.activation or "relu")
        act = kw["activation"]
    if act in ("topk", "batchtopk"):
        kw.setdefault("k", spec.k)
    return dictionaries.create(spec.arch, d_in=d_in, d_sae=d_sae, **kw)


MAX_DEAD_AFTER = 10_000_000
"""Gao et al.'s dead-latent window: rows without firing after which a latent counts as dead."""


def auto_dead_after(run_rows: int) -> int:
    """The default dead-latent window for a run of ``run_rows`` rows: a tenth of it, at most 10 M rows."""
    return max(min(MAX_DEAD_AFTER, run_rows // 10), 1)


@torch.no_grad()
def fold_input_shift_(d: Dictionary, shift: Tensor) -> None:
    """Make ``d`` compute on raw inputs what it computed on ``x - shift`` (in place).

    ``(x - s) @ W_enc + b_enc == x @ W_enc + (b_enc - s @ W_enc)``, and a skip path ``(x - s) @ W_skip.T`` moves
    ``- s @ W_skip.T`` into ``b_dec``. ``shift`` is in the units the weights see (after ``norm_scale_in``).
    """
    shift = shift.to(d.W_enc.dtype)
    d.b_enc.sub_(shift @ d.W_enc)
    if getattr(d, "W_skip", None) is not None:
        d.b_dec.sub_(shift @ d.W_skip.T)


@torch.no_grad()
def capped_row_weights(target: Tensor, cap: float | None) -> Tensor | None:
    """Per-row loss weights ``min(1, (cap * median_norm / norm)^2)`` over ``target`` rows ``(N, [L,] D)``.

    A row whose norm exceeds ``cap`` times the batch's median row norm then weighs in the loss like a row of exactly
    that norm with the same relative error, so a few massive-activation rows (norms 30-100x the median in some
    MLPs) cannot dominate every batch's summed squared error. ``None`` when nothing is capped.
    """
    if cap is None:
        return None
    norms = target.float().flatten(1).norm(dim=-1)  # (N,)
    limit = cap * norms.median()
    if not bool((norms > limit).any()):
        return None
    return (limit / norms.clamp_min(1e-12)).clamp(max=1.0).pow(2).to(target.dtype)


@torch.no_grad()
def lstsq_map(x: Tensor, y: Tensor, ridge: float = 1e-3) -> Tensor:
    """``W [d_out, d_in]`` minimising ``|x @ W.T - y|^2 + ridge * n * |W|^2`` (float64 normal equations)."""
    x64, y64 = x.double(), y.double()  # (N, D_in), (N, D_out)
    gram = x64.T @ x64  # (D_in, D_in)
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram, x64.T @ y64).T.to(x.dtype)


class Objective(nn.Module):
    """The weighted training loss of one dictionary (a module, so DDP can wrap it)."""

    def __init__(self, dictionary: Dictionary, fast: bool = True):
        super().__init__()
        self.dictionary = dictionary
        self.fast = fast
        """Use the sparse-gradient TopK step (:mod:`.sparse_topk`) where it applies."""

    def forward(self, x: Tensor, target: Tensor, dead_mask: Tensor | None, weights: dict[str, float],
                row_weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """``(loss, terms, fired)``: ``fired`` marks latents active on at least one row (detached)."""
        d = self.dictionary
        if self.fast and sparse_topk.supports(d):
            terms, fired = sparse_topk.topk_loss_terms(d, x, target, dead_mask, row_weight)
            return self._total(terms, weights), terms, fired
        out = d(x)
        terms = d.loss_terms(x, out, target=target if d.cfg.transcoder else None, dead_mask=dead_mask,
                             row_weight=row_weight)
        loss = self._total(terms, weights)
        with torch.no_grad():
            acts = out.feature_acts.detach()  # (B, [L,] S)
            if isinstance(d, BatchTopKDictionary) and d.training:
                d.update_threshold(acts)
            fired = (acts != 0).flatten(0, acts.dim() - len(d.latent_shape()) - 1).any(0)
        return loss, terms, fired

    @staticmethod
    def _total(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
        loss = terms["mse"]
        for name, w in weights.items():
            if name in terms and w:
                loss = loss + w * terms[name]
        return loss


class DictionaryTrainer:
    """Training state of one dictionary (see module docstring)."""

    def __init__(self, spec: DictionarySpec, dictionary: Dictionary, cfg: TrainConfig, info: DistInfo):
        self.spec, self.cfg, self.info = spec, cfg, info
        self.dictionary = dictionary.to(info.device).train()
        self.objective: nn.Module = Objective(self.dictionary)
        if info.enabled:
            ids = [info.local_rank] if info.device.startswith("cuda") else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        o = cfg.optim
        self.base_lr = spec.lr or o.lr
        self.optimizer = torch.optim.Adam(self.dictionary.parameters(), lr=self.base_lr, betas=(o.beta1, o.beta2),
                                          eps=o.eps)
        self.tracker = DeadLatentTracker(self.dictionary.latent_shape(), cfg.dead.dead_after_tokens or MAX_DEAD_AFTER,
                                         info.device)
        self.scale_in: Tensor | None = None
        self.scale_out: Tensor | None = None
        self.shift_in: Tensor | None = None
        """Transcoders: the input centre subtracted (normalised units) before encoding; folded into b_enc on export."""
        self.initialised = False

    # ------------------------------------------------------------------ data
    def inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(x, target)`` for this dictionary from a batch; hooks stacked on dim 1 when there are several."""
        def take(names: list[str]) -> Tensor:
            ts = [batch[h].to(self.info.device) for h in names]
            return ts[0] if len(ts) == 1 and self.dictionary.W_enc.dim() == 2 else torch.stack(ts, 1)  # (B, [L,] D)

        x = take(self.spec.hooks_in)
        target = take(self.spec.hooks_out) if self.dictionary.cfg.transcoder else x
        return x, target

    def normalised(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs in training units: scaled to mean norm sqrt(d), and (transcoders) centred at ``shift_in``."""
        if self.scale_in is not None:
            x, target = x * self.scale_in, (target * self.scale_out if self.dictionary.cfg.transcoder else
                                            x * self.scale_in)
        if self.shift_in is not None:
            x = x - self.shift_in
        return x, target

    def centres_input(self) -> bool:
        """True for transcoders whose input centre can be folded into ``b_enc`` (and ``b_dec`` through W_skip)."""
        d = self.dictionary
        return bool(self.cfg.loop.center_transcoder_input and d.cfg.transcoder and d.W_enc.dim() == 2
                    and hasattr(d, "b_enc") and not hasattr(d, "b_gate"))

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialise(self, batch: dict[str, Tensor]) -> None:
        """Normalisation factor and ``b_dec`` from the first batch, gathered over every rank."""
        x, target = self.inputs(batch)
        x, target = all_gather_rows(x, self.info), all_gather_rows(target, self.info)
        loop = self.cfg.loop
        if loop.normalize_activations:
            self.scale_in = norm_factor(x)
            self.scale_out = norm_factor(target) if self.dictionary.cfg.transcoder else self.scale_in
        x, target = self.normalised(x, target)
        if self.centres_input():
            self.shift_in = geometric_median(x)
            x = x - self.shift_in
        if loop.init_b_dec and self.dictionary.b_dec.shape == target.shape[1:]:
            self.dictionary.b_dec.copy_(geometric_median_per_source(target))
        if loop.init_skip_lstsq and x.dim() == 2 and getattr(self.dictionary, "W_skip", None) is not None:
            keep = capped_row_weights(target, loop.row_norm_cap)
            keep = slice(None) if keep is None else keep == 1  # the least-squares start ignores capped rows too
            self.dictionary.W_skip.copy_(lstsq_map(x[keep], (target - self.dictionary.b_dec)[keep]))
        if self.cfg.dead.dead_after_tokens is None:
            self.tracker.dead_after = auto_dead_after(loop.steps * x.shape[0])
        self.initialised = True

    # ------------------------------------------------------------------ one step
    def weights(self, step: int) -> dict[str, float]:
        """Loss-term weights at ``step`` (the sparsity coefficient warms up)."""
        s = self.cfg.sparsity
        ramp = warmup_factor(step, s.warmup_steps)
        out = {"auxk": s.auxk_coefficient, "aux_recon": s.aux_recon_coefficient}
        for term, default in DEFAULT_COEFFICIENTS.items():
            coef = self.spec.sparsity_coefficient if self.spec.sparsity_coefficient is not None else default
            out[term] = coef * ramp
        return out

    def uses_unit_decoder(self) -> bool:
        opts = self.dictionary.options
        return self.cfg.dead.decoder_constraint and getattr(opts, "l1_weighting", "unit_decoder") == "unit_decoder" \
            and self.dictionary.architecture not in ("crosscoder", "clt")

    def step(self, batch: dict[str, Tensor], step: int) -> dict[str, float]:
        """One optimisation step; returns this step's (local) metrics."""
        x, target = self.normalised(*self.inputs(batch))
        d = self.dictionary
        dead = self.tracker.dead_mask() if self.spec.family == "topk" else None
        weights = self.weights(step)
        row_weight = capped_row_weights(target, self.cfg.loop.row_norm_cap)
        loss, terms, fired = self.objective(x, target, dead, weights, row_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.update(step)
        fired = all_reduce(fired.to(torch.int32), self.info, "max").bool()
        self.tracker.update(fired, x.shape[0] * self.info.world_size)
        if self.spec.family == "l1" and self.cfg.dead.resample_every and (step + 1) % self.cfg.dead.resample_every == 0:
            resample_dead(d, self.tracker.dead_mask(), x, target, self.optimizer, scale=self.cfg.dead.resample_scale)
            broadcast_parameters(d, self.info)  # ranks resampled from different rows: keep rank 0's choice
        metrics = {k: float(v.detach()) for k, v in terms.items()}
        metrics.update(loss=float(loss.detach()), lr=self.optimizer.param_groups[0]["lr"],
                       sparsity_coefficient=weights["l1"], dead_fraction=self.tracker.dead_fraction())
        return metrics

    def update(self, step: int) -> None:
        """Decoder-gradient projection, clipping, the scheduled Adam step, decoder renormalisation."""
        d, o = self.dictionary, self.cfg.optim
        unit = self.uses_unit_decoder()
        if unit:
            d.remove_parallel_decoder_grad_()
        if o.grad_clip:
            nn.utils.clip_grad_norm_(d.parameters(), o.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * lr_factor(step, self.cfg.loop.steps, o)
        self.optimizer.step()
        if unit:
            d.normalize_decoder_()

    # ------------------------------------------------------------------ results and state
    def export(self) -> Dictionary:
        """A copy for inference in the original activation units (normalisation stored as buffers), eval mode."""
        d = copy.deepcopy(self.dictionary).cpu().eval()
        if self.shift_in is not None:
            fold_input_shift_(d, self.shift_in.cpu())
        if self.scale_in is not None:
            out = self.scale_out if d.cfg.transcoder else None
            d.set_activation_norm(self.scale_in.cpu(), None if out is None else out.cpu())
        return d

    def state_tensors(self, prefix: str) -> dict[str, Tensor]:
        out = {f"{prefix}param.{k}": v for k, v in self.dictionary.state_dict().items() if v is not None}
        names = {id(p): n for n, p in self.dictionary.named_parameters()}
        for p, st in self.optimizer.state.items():
            for key, value in st.items():
                out[f"{prefix}adam.{names[id(p)]}.{key}"] = torch.as_tensor(value)
        out[f"{prefix}dead.since"] = self.tracker.since
        out[f"{prefix}dead.after"] = torch.tensor(self.tracker.dead_after)
        if self.shift_in is not None:
            out[f"{prefix}shift_in"] = self.shift_in
        if self.scale_in is not None:
            out[f"{prefix}scale_in"], out[f"{prefix}scale_out"] = torch.as_tensor(self.scale_in), \
                torch.as_tensor(self.scale_out)
        return out

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, Tensor], prefix: str) -> None:
        params = {k[len(prefix) + 6:]: v for k, v in tensors.items() if k.startswith(prefix + "param.")}
        self.dictionary.load_state_dict(params, strict=False)
        for name, p in self.dictionary.named_parameters():
            state = {key: tensors[f"{prefix}adam.{name}.{key}"].to(p.device)
                     for key in ("step", "exp_avg", "exp_avg_sq") if f"{prefix}adam.{name}.{key}" in tensors}
            if state:
                self.optimizer.state[p] = state
        self.tracker.since.copy_(tensors[f"{prefix}dead.since"])
        if f"{prefix}dead.after" in tensors:
            self.tracker.dead_after = int(tensors[f"{prefix}dead.after"])
        if f"{prefix}shift_in" in tensors:
            self.shift_in = tensors[f"{prefix}shift_in"].to(self.info.device)
        if f"{prefix}scale_in" in tensors:
            self.scale_in = tensors[f"{prefix}scale_in"].to(self.info.device)
            self.scale_out = tensors[f"{prefix}scale_out"].to(self.info.device)
        self.initialised = True
