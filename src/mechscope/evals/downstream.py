"""Downstream metrics: next-token loss with the dictionary spliced in, against the clean and zero-ablated model.

For each batch of token contexts three forward passes run through ``model.hooks``:

- clean: nothing replaced (the activations at the dictionary's hook points are recorded on the way);
- spliced: the written hook point (``hook_name`` for autoencoders, ``hook_name_out`` for transcoders) is replaced
  by the reconstruction;
- zero-ablated: the written hook point is replaced by zeros.

Replacement happens only at positions whose token is not excluded (special tokens such as BOS are left as they
are, matching training, which excludes them), and losses are averaged over those positions.
``ce_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean)`` (1: as good as clean; 0: as bad as ablating).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from ..data.packing import batched, train_mask
from ..dictionaries import Crosscoder, Dictionary
from .metrics import ReconstructionStats


@dataclass
class Downstream:
    """Next-token cross-entropy (nats per token) and KL with the dictionary spliced in."""

    tokens: int
    """Predicted positions averaged over."""
    ce_clean: float
    """Loss of the unmodified model."""
    ce_spliced: float
    """Loss with the hook point replaced by the reconstruction."""
    ce_zero: float
    """Loss with the hook point replaced by zeros."""
    ce_recovered: float
    """(ce_zero - ce_spliced) / (ce_zero - ce_clean)."""
    kl: float
    """Mean KL(clean || spliced) of the next-token distributions."""


def _replace(mask: Tensor, values):  # type: ignore[no-untyped-def]
    def fn(act: Tensor, hook) -> Tensor:  # type: ignore[no-untyped-def]
        out = act.clone()
        out[mask] = values(act[mask]).to(act.dtype)  # (N, D) at kept positions
        return out
    return fn


def _ce(logits: Tensor, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    m = mask[:, :-1]
    return nll[m], logp[m]  # (N,), (N, V)


@torch.no_grad()
def evaluate_with_model(model, d: Dictionary, contexts: Iterable[Int[Tensor, "ctx"]], *, model_batch: int = 8,
                        exclude: Iterable[int] = (), stats: ReconstructionStats | None = None) -> Downstream:
    """CE loss recovered and KL of ``d`` spliced into ``model`` over ``contexts``; also fills ``stats`` if given."""
    if isinstance(d, Crosscoder) or d.W_enc.dim() != 2:
        raise ValueError(f"{d.architecture}: downstream metrics need a single-layer SAE or transcoder")
    was_training = d.training
    d.eval()
    hook_in = model.resolve(d.cfg.hook_name).name
    hook_out = model.resolve(d.hook_name_out).name
    exclude = list(exclude)
    sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "kl": 0.0}
    n = 0
    for ids in batched(contexts, model_batch):  # (B, T)
        ids = ids.to(model.cfg.device)
        mask = train_mask(ids, exclude)
        seen: dict[str, Tensor] = {}

        def record(act: Tensor, hook) -> None:  # type: ignore[no-untyped-def]
            seen[hook.name] = act[mask]

        with model.hooks([(hook_in, record)] + ([(hook_out, record)] if hook_out != hook_in else [])):
            clean_logits = model(ids)
        if stats is not None:
            stats.update(seen[hook_in], seen[hook_out] if d.cfg.transcoder else None)
        x_in = seen[hook_in]
        recon = _replace(mask, lambda a: d(x_in).reconstruction if d.cfg.transcoder else d(a).reconstruction)
        with model.hooks([(hook_out, recon)]):
            spliced_logits = model(ids)
        with model.hooks([(hook_out, _replace(mask, torch.zeros_like))]):
            zero_logits = model(ids)
        nll_c, logp_c = _ce(clean_logits, ids, mask)
        nll_s, logp_s = _ce(spliced_logits, ids, mask)
        nll_z, _ = _ce(zero_logits, ids, mask)
        sums["clean"] += float(nll_c.sum())
        sums["spliced"] += float(nll_s.sum())
        sums["zero"] += float(nll_z.sum())
        sums["kl"] += float((logp_c.exp() * (logp_c - logp_s)).sum())
        n += nll_c.numel()
    d.train(was_training)
    if n == 0:
        raise ValueError("no positions to evaluate (contexts empty or every token excluded)")
    clean, spliced, zero = sums["clean"] / n, sums["spliced"] / n, sums["zero"] / n
    recovered = (zero - spliced) / (zero - clean) if zero != clean else float("nan")
    return Downstream(n, clean, spliced, zero, recovered, sums["kl"] / n)
