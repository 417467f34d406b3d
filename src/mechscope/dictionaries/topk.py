"""TopK and BatchTopK dictionaries.

TopK keeps the k largest pre-activations of each row (then ReLU). Its forward pass decodes *sparsely*: only the k
active decoder rows are gathered (``F.embedding_bag``), so decoding costs ``k * d_out`` per row instead of
``d_sae * d_out``.

BatchTopK keeps the ``k * n_rows`` largest ReLU'd pre-activations over the whole batch during training (k active
on average per row). For inference it switches to a JumpReLU-style global ``threshold`` (an exponential moving
average of the smallest kept activation, updated by :meth:`BatchTopKDictionary.update_threshold`), so each row is
encoded independently of the batch. It is saved the way SAELens saves it: as a JumpReLU with that threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from .base import Dictionary, DictionaryOptions, DictionaryOutput, row_mean
from .errors import DictionaryConfigError, DictionaryFormatError
from .registry import register


def sparse_decode(values: Float[Tensor, "... k"], indices: Int[Tensor, "... k"],
                  W_dec: Float[Tensor, "d_sae d_out"]) -> Float[Tensor, "... d_out"]:
    """``sum_j values[..., j] * W_dec[indices[..., j]]`` without materialising the dense latent vector."""
    lead, k = values.shape[:-1], values.shape[-1]
    out = F.embedding_bag(indices.reshape(-1, k), W_dec, per_sample_weights=values.reshape(-1, k).to(W_dec.dtype),
                          mode="sum")  # (N, D_out)
    return out.reshape(*lead, W_dec.shape[-1])


def _scatter(values: Tensor, indices: Tensor, like: Tensor) -> Tensor:
    return torch.zeros_like(like).scatter(-1, indices, values.to(like.dtype))


@dataclass
class TopKOptions(DictionaryOptions):
    k: int = 32
    """Number of active latents per row."""

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k <= 0:
            raise DictionaryConfigError(f"k must be a positive integer, got {self.k!r}")


@register
class TopKDictionary(Dictionary):
    """Exactly ``k`` latents per row (fewer non-zero if some of the top k are negative before the ReLU)."""

    architecture = "topk"
    sae_lens_name = "topk"
    Options = TopKOptions
    options: TopKOptions

    def check_config(self) -> None:
        if self.options.k > self.cfg.d_sae:
            raise DictionaryConfigError(f"k={self.options.k} exceeds d_sae={self.cfg.d_sae}")

    def sae_lens_fields(self) -> dict[str, object]:
        return {**super().sae_lens_fields(), "k": self.options.k, "rescale_acts_by_decoder_norm": False}

    def topk(self, pre: Float[Tensor, "... d_sae"]) -> tuple[Tensor, Tensor]:
        """``(values, indices)`` of the k largest pre-activations, values passed through ReLU."""
        values, indices = pre.topk(self.options.k, dim=-1, sorted=False)  # (..., k)
        return values.relu(), indices

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return _scatter(*self.topk(pre), pre)

    def encode_topk(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor, Tensor]:
        """``(values, indices, pre_acts)``: the sparse form of :meth:`encode`."""
        pre = self.pre_acts(x)
        return *self.topk(pre), pre

    def decode_sparse(self, values: Float[Tensor, "... k"], indices: Int[Tensor, "... k"],
                      x: Tensor | None = None) -> Float[Tensor, "... d_out"]:
        """Decode from the k active ``(values, indices)`` only; equals ``decode(scatter(values))``."""
        values = values.to(self.dtype)
        if self.feature_scale is not None:
            values = values * self.feature_scale[indices]
        return self._finish_decode(sparse_decode(values, indices, self.W_dec) + self.b_dec, x)

    def forward(self, x: Float[Tensor, "... d_in"]) -> DictionaryOutput:
        values, indices, pre = self.encode_topk(x)
        return DictionaryOutput(self.decode_sparse(values, indices, x), _scatter(values, indices, pre), pre)

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        return {"auxk": auxk_loss(self, out, target, dead_mask, row_weight)}


def auxk_loss(d: Dictionary, out: DictionaryOutput, target: Tensor, dead_mask: Tensor | None,
              row_weight: Tensor | None = None) -> Tensor:
    """AuxK (Gao et al. 2024): the top ``d_out // 2`` dead latents reconstruct the residual error.

    In the units of the ``mse`` term (squared error summed over features, mean over rows), as Gao et al. define it:
    ``loss = mse + auxk_coefficient * auxk`` then gives dead latents a gradient of the size the paper intends
    (dividing by the error's variance instead shrank it by the mse's magnitude, hundreds of times, and left dead
    latents dead). The dead latents contribute their raw pre-activations (no ReLU, as in SAELens), so latents whose
    pre-activation is negative everywhere still get a gradient. Scaled by ``min(n_dead / k_aux, 1)``; zero when
    ``dead_mask`` is None or selects nothing.
    ``row_weight`` (``(N,)``) weights each row's squared error, as in the ``mse`` term.
    """
    zero = out.reconstruction.new_zeros(())
    if dead_mask is None or not bool(dead_mask.any()):
        return zero
    k_aux, scale = auxk_size(d.d_out, int(dead_mask.sum()))
    err = (target - out.reconstruction).detach()  # (..., D_out)
    pre = out.pre_acts.masked_fill(~dead_mask.to(torch.bool), float("-inf"))
    values, indices = pre.topk(k_aux, dim=-1, sorted=False)
    # Raw pre-activations, no ReLU (as SAELens): a dead latent is typically dead because its pre-activation is
    # negative on every row, and a ReLU here would give exactly those latents no gradient.
    e_hat = sparse_decode(values, indices, d.W_dec)
    row_err = (e_hat - err).pow(2).sum(-1)  # (N,)
    return scale * row_mean(row_err, row_weight)


def auxk_size(d_out: int, n_dead: int) -> tuple[int, float]:
    """``(k_aux, scale)``: how many dead latents AuxK uses (``d_out // 2`` at most) and its loss scale."""
    k_aux = max(min(d_out // 2, n_dead), 1)
    return k_aux, min(n_dead / max(d_out // 2, 1), 1.0)


@dataclass
class BatchTopKOptions(DictionaryOptions):
    k: float = 32.0
    """Average number of active latents per row over a training batch."""
    threshold_lr: float = 0.01
    """Step of the moving average that turns the batch's smallest kept activation into the inference threshold."""

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise DictionaryConfigError(f"k must be positive, got {self.k!r}")
        if not 0 < self.threshold_lr <= 1:
            raise DictionaryConfigError(f"threshold_lr must be in (0, 1], got {self.threshold_lr!r}")


@register
class BatchTopKDictionary(Dictionary):
    """Batch-level top-k in training mode, global ``threshold`` in eval mode (see module docstring)."""

    architecture = "batchtopk"
    sae_lens_name = "jumprelu"  # SAELens saves BatchTopK for inference as a JumpReLU
    Options = BatchTopKOptions
    options: BatchTopKOptions

    def __init__(self, cfg, options=None):
        super().__init__(cfg, options)
        self.register_buffer("threshold", torch.zeros((), dtype=cfg.torch_dtype))

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        if not self.training:
            return pre.relu() * (pre > self.threshold)
        acts = pre.relu()
        flat = acts.reshape(-1)  # (N * S,)
        n_keep = min(int(self.options.k * acts[..., 0].numel()), flat.numel())
        values, indices = flat.topk(n_keep, sorted=False)
        return torch.zeros_like(flat).scatter(0, indices, values).reshape(acts.shape)

    @torch.no_grad()
    def update_threshold(self, feature_acts: Tensor) -> None:
        """Move ``threshold`` towards the smallest positive activation of a training batch."""
        positive = feature_acts[feature_acts > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min().to(self.threshold.dtype)
        if self.threshold <= 0:
            self.threshold.copy_(smallest)
        else:
            lr = self.options.threshold_lr
            self.threshold.mul_(1 - lr).add_(lr * smallest)

    def to_jumprelu(self) -> Dictionary:
        """An equivalent inference-only :class:`JumpReLUDictionary` (per-feature thresholds all equal)."""
        from .jumprelu import JumpReLUDictionary

        jr = JumpReLUDictionary(self.cfg)
        tensors = self.saved_tensors()
        jr.load_saved_tensors(tensors)
        return jr.eval()

    def saved_tensors(self) -> dict[str, Tensor]:
        out = super().saved_tensors()
        out["threshold"] = self.threshold.detach().expand(self.cfg.d_sae).clone()
        return out

    def expected_saved_shapes(self, extras: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
        return {**super().expected_saved_shapes(extras), "threshold": (self.cfg.d_sae,)}

    @torch.no_grad()
    def load_saved_tensors(self, tensors: dict[str, Tensor]) -> None:
        thr = tensors["threshold"]
        if not bool((thr == thr[0]).all()):
            raise DictionaryFormatError("a BatchTopK file must hold one threshold repeated for every latent")
        super().load_saved_tensors(tensors)
        self.threshold.copy_(thr[0])
