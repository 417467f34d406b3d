"""The whole replacement model: every MLP replaced by its transcoder at once, error terms off.

Each ``blocks.L.mlp_out`` is replaced by ``transcoder_L(blocks.L.mlp_in)``, where ``mlp_in`` is the replacement
model's own (already-perturbed) MLP input, so reconstruction errors compound through the layers exactly as they do
in the replacement model an attribution graph describes (before its error nodes are added back). Positions holding
excluded tokens (BOS, EOS, padding: what training leaves out) keep the real MLP output.

``ReplacementEval`` reports next-token cross-entropy of the real and the replacement model, KL(real || replacement)
and how often both put the same token first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from ..data.packing import batched, train_mask
from ..dictionaries import Dictionary
from .downstream import _ce


@dataclass
class ReplacementEval:
    """Next-token metrics of the replacement model against the real one (nats per token)."""

    tokens: int
    """Predicted positions averaged over."""
    layers: int
    """MLPs replaced."""
    ce_clean: float
    """Cross-entropy of the real model."""
    ce_replacement: float
    """Cross-entropy with every MLP replaced by its transcoder (no error terms)."""
    kl: float
    """Mean KL(real || replacement) of the next-token distributions."""
    top1_agreement: float
    """Fraction of positions where both models rank the same token first."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def view(self):
        """Interactive view (:mod:`mechscope.display`): real vs replacement loss (bars, hover for the value), KL
        and top-1 agreement."""
        from .. import display

        title = f"replacement model ({self.layers} MLPs replaced)"
        if self.tokens == 0:
            return display.empty(title, "no token was predicted")
        bars = display.bar_chart(["real model", "replacement model"], [self.ce_clean, self.ce_replacement],
                                 value_name="cross-entropy (nats/token)", title="next-token loss")
        return display.panel(title, [bars], summary=[
            ("tokens", self.tokens), ("CE real", self.ce_clean), ("CE replacement", self.ce_replacement),
            ("KL (nats/token)", self.kl), ("top-1 agreement", self.top1_agreement)])

    def _repr_html_(self) -> str:
        return self.view().html()


def _hooks(model: Any, transcoders: Sequence[Dictionary], mask: Tensor) -> list[tuple[str, Any]]:
    hooks: list[tuple[str, Any]] = []
    for tc in transcoders:
        hook_in, hook_out = model.resolve(tc.cfg.hook_name).name, model.resolve(tc.hook_name_out).name
        seen: dict[str, Tensor] = {}

        def read(act: Tensor, hook: Any, seen: dict[str, Tensor] = seen) -> None:
            seen["x"] = act[mask]  # (N, D_in)

        def write(act: Tensor, hook: Any, tc: Dictionary = tc, seen: dict[str, Tensor] = seen) -> Tensor:
            out = act.clone()
            out[mask] = tc(seen["x"]).reconstruction.to(act.dtype)
            return out

        hooks += [(hook_in, read), (hook_out, write)]
    return hooks


@torch.no_grad()
def evaluate_replacement(model: Any, transcoders: Sequence[Dictionary], contexts: Iterable[Int[Tensor, " ctx"]], *,
                         model_batch: int = 8, exclude: Iterable[int] = ()) -> ReplacementEval:
    """Splice every transcoder of ``transcoders`` at once (no error terms) and compare with the real model."""
    if not transcoders:
        raise ValueError("evaluate_replacement needs at least one transcoder")
    for i, tc in enumerate(transcoders):
        if not tc.cfg.transcoder or tc.W_enc.dim() != 2:
            raise ValueError(f"transcoders[{i}] is not a single-layer transcoder ({tc.architecture})")
    modes = [tc.training for tc in transcoders]
    for tc in transcoders:
        tc.eval()
    exclude = list(exclude)
    sums = {"clean": 0.0, "replacement": 0.0, "kl": 0.0, "agree": 0.0}
    n = 0
    try:
        for ids in batched(contexts, model_batch):  # (B, T)
            ids = ids.to(model.cfg.device)
            mask = train_mask(ids, exclude)
            nll_c, logp_c = _ce(model(ids), ids, mask)
            with model.hooks(_hooks(model, transcoders, mask)):
                nll_r, logp_r = _ce(model(ids), ids, mask)
            sums["clean"] += float(nll_c.sum())
            sums["replacement"] += float(nll_r.sum())
            sums["kl"] += float((logp_c.exp() * (logp_c - logp_r)).sum())
            sums["agree"] += float((logp_c.argmax(-1) == logp_r.argmax(-1)).sum())
            n += nll_c.numel()
    finally:
        for tc, mode in zip(transcoders, modes):
            tc.train(mode)
    if n == 0:
        raise ValueError("no positions to evaluate (contexts empty or every token excluded)")
    return ReplacementEval(n, len(transcoders), sums["clean"] / n, sums["replacement"] / n, sums["kl"] / n,
                           sums["agree"] / n)
