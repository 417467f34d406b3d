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

    def view(self):
        """Interactive view (:mod:`mechscope.display`): the three losses as bars (hover for the value), CE
        recovered and KL."""
        from .. import display

        if self.tokens == 0:
            return display.empty("downstream loss", "no token was predicted")
        bars = display.bar_chart(["clean", "spliced", "zero-ablated"], [self.ce_clean, self.ce_spliced, self.ce_zero],
                                 value_name="cross-entropy (nats/token)", title="next-token loss")
        return display.panel("downstream loss", [bars], summary=[
            ("tokens", self.tokens), ("CE recovered", self.ce_recovered), ("KL (nats/token)", self.kl)])

    def _repr_html_(self) -> str:
        return self.view().html()


def _replace(mask: Tensor, values):
    def fn(act: Tensor, hook) -> Tensor:
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
def evaluate_with_model(model, d: Dictionary, contexts: Iterable[Int[Tensor, " ctx"]], *, model_batch: int = 8,
                        exclude: Iterable[int] = (), stats: ReconstructionStats | None = None) -> Downstream:
    """CE loss recovered and KL of ``d`` spliced into ``model`` over ``contexts``; also fills ``stats`` if given."""
    out = evaluate_many(model, {"d": d}, contexts, model_batch=model_batch, exclude=exclude,
                        stats=None if stats is None else {"d": stats})
    return out["d"]


def _check_single_layer(name: str, d: Dictionary) -> None:
    if isinstance(d, Crosscoder) or d.W_enc.dim() != 2:
        raise ValueError(f"{name} ({d.architecture}): downstream metrics need a single-layer SAE or transcoder")


@torch.no_grad()
def evaluate_many(model, dicts: dict[str, Dictionary], contexts: Iterable[Int[Tensor, " ctx"]], *,
                  model_batch: int = 8, exclude: Iterable[int] = (),
                  stats: dict[str, ReconstructionStats] | None = None) -> dict[str, Downstream]:
    """:func:`evaluate_with_model` for several dictionaries, each spliced alone, sharing forward passes.

    One clean pass per batch records every hook point read or written, and one zero-ablated pass runs per
    distinct written hook point, so n dictionaries cost ``n + 1 + n_hooks`` passes instead of ``3 n``.
    """
    for name, d in dicts.items():
        _check_single_layer(name, d)
    modes = {name: d.training for name, d in dicts.items()}
    for d in dicts.values():
        d.eval()
    sites = {name: (model.resolve(d.cfg.hook_name).name, model.resolve(d.hook_name_out).name)
             for name, d in dicts.items()}
    recorded = sorted({h for pair in sites.values() for h in pair})
    outs = sorted({o for _, o in sites.values()})
    exclude = list(exclude)
    sums = {name: {"spliced": 0.0, "kl": 0.0} for name in dicts}
    clean_sum, zero_sum = 0.0, {o: 0.0 for o in outs}
    n = 0
    for ids in batched(contexts, model_batch):  # (B, T)
        ids = ids.to(model.cfg.device)
        mask = train_mask(ids, exclude)
        seen: dict[str, Tensor] = {}

        def record(act: Tensor, hook) -> None:
            seen[hook.name] = act[mask]  # noqa: B023  (runs inside this iteration's forward pass)

        with model.hooks([(h, record) for h in recorded]):
            clean_logits = model(ids)
        nll_c, logp_c = _ce(clean_logits, ids, mask)
        clean_sum += float(nll_c.sum())
        n += nll_c.numel()
        for o in outs:
            with model.hooks([(o, _replace(mask, torch.zeros_like))]):
                zero_sum[o] += float(_ce(model(ids), ids, mask)[0].sum())
        for name, d in dicts.items():
            hook_in, hook_out = sites[name]
            x_in = seen[hook_in]
            recon = d(x_in).reconstruction  # (N, D_out)
            if stats is not None and name in stats:
                stats[name].update(x_in, seen[hook_out] if d.cfg.transcoder else None)
            with model.hooks([(hook_out, _replace(mask, lambda a, r=recon: r))]):
                nll_s, logp_s = _ce(model(ids), ids, mask)
            sums[name]["spliced"] += float(nll_s.sum())
            sums[name]["kl"] += float((logp_c.exp() * (logp_c - logp_s)).sum())
    for name, d in dicts.items():
        d.train(modes[name])
    if n == 0:
        raise ValueError("no positions to evaluate (contexts empty or every token excluded)")
    clean = clean_sum / n
    result = {}
    for name in dicts:
        spliced, zero = sums[name]["spliced"] / n, zero_sum[sites[name][1]] / n
        recovered = (zero - spliced) / (zero - clean) if zero != clean else float("nan")
        result[name] = Downstream(n, clean, spliced, zero, recovered, sums[name]["kl"] / n)
    return result
