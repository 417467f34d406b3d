"""Direct logit attribution: each component's contribution to a logit (or a logit difference).

The final residual is a sum of components (embeddings, every head or attention layer, every MLP). Through the
final norm with its scale frozen at the cached value, each component maps linearly to the logits:

    logit[t] = Σ_c  norm_linear(component_c) · W_U[:, t]   +   norm_bias · W_U[:, t] + b_U[t]

so the contributions plus ``bias`` sum to the logit exactly (before Gemma's final soft-capping, which is not
additive; ``total`` is then the pre-cap logit).

    >>> dla = direct_logit_attribution(model, prompts, answer=io_ids, wrong=s_ids)
    >>> dla.top(5)         # [(label, contribution), ...]
    >>> dla.by_layer()     # heads as a layers × heads PatchResult
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..interventions.results import PatchResult
from ..models.hooked import HookedModel
from ..models.tokens import Inputs


@dataclass
class DLAResult:
    """``values[c, b]``: contribution of component ``labels[c]`` for prompt ``b``; ``bias[b]`` the constant term;
    ``total[b]`` the (pre-soft-cap) logit or logit difference they sum to."""

    values: Float[Tensor, "component batch"]
    labels: list[str]
    bias: Float[Tensor, " batch"]
    total: Float[Tensor, " batch"]
    n_layers: int
    n_heads: int

    def mean(self) -> Float[Tensor, " component"]:
        return self.values.mean(1)

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` components with the largest mean absolute contribution."""
        m = self.mean()
        idx = m.abs().argsort(descending=True)[:k]
        return [(self.labels[i], float(m[i])) for i in idx]

    def heads(self) -> PatchResult:
        """Mean per-head contributions as layers × heads (needs ``split_heads=True``)."""
        index = {lab: i for i, lab in enumerate(self.labels)}
        if "L0H0" not in index:
            raise ValueError("this attribution was computed without split_heads=True")
        m = self.mean()
        values = torch.stack([torch.stack([m[index[f"L{layer}H{h}"]] for h in range(self.n_heads)])
                              for layer in range(self.n_layers)])
        return PatchResult(values, [f"L{layer}" for layer in range(self.n_layers)],
                           [f"H{h}" for h in range(self.n_heads)], "direct logit attribution", title="DLA per head")

    def view(self, k: int = 20):
        """Interactive views (:mod:`mechscope.display`): the ``k`` largest mean contributions as bars, and the
        per-head contributions as a layers × heads heatmap when heads were split."""
        from .. import display

        title = "direct logit attribution"
        if self.values.numel() == 0:
            return display.empty(title, "no components (empty attribution)")
        top = self.top(k)
        children = [display.bar_chart([lab for lab, _ in top], [v for _, v in top],
                                      title=f"top {len(top)} components (mean over prompts)",
                                      value_name="contribution")]
        if "L0H0" in self.labels:
            children.append(self.heads().view(normalized=False))
        summary = [("total (mean)", float(self.total.float().mean())), ("bias term (mean)", float(self.bias.mean())),
                   ("sum of contributions + bias", float(self.mean().sum() + self.bias.mean()))]
        return display.panel(title, children, summary=summary + [(lab, v) for lab, v in top[:3]])

    def _repr_html_(self) -> str:
        return self.view().html()


def _ids(x: int | str | Sequence[int] | Tensor, model: HookedModel, batch: int) -> Tensor:
    if isinstance(x, str):
        x = model.to_single_token(x)
    t = torch.as_tensor(x, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} token ids for {batch} prompts; give one id or one per prompt")
    if int(t.max()) >= model.cfg.d_vocab or int(t.min()) < 0:
        raise ValueError(f"token ids must lie in 0..{model.cfg.d_vocab - 1}")
    return t


def direct_logit_attribution(model: HookedModel, inputs: Inputs, answer: int | str | Sequence[int] | Tensor,
                             wrong: int | str | Sequence[int] | Tensor | None = None, *, pos: int = -1,
                             split_heads: bool = True) -> DLAResult:
    """Contributions of every component to ``logit[answer]`` (minus ``logit[wrong]``) at ``pos``."""
    n = model.cfg.n_layers
    names = ["embed"] + (["pos_embed"] if model.pos_embed_module is not None else [])
    for layer in range(n):
        names += [f"blocks.{layer}.attn.z" if split_heads else f"blocks.{layer}.attn_out", f"blocks.{layer}.mlp_out"]
    names.append(f"blocks.{n - 1}.resid_post")
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names=names)
        comps, labels = cache.decompose_resid(split_heads=split_heads)  # (C, B, T, D)
        b = comps.shape[1]
        scale = cache.final_norm_scale()[:, pos]  # (B, 1): the final norm's scale, frozen at the cached value
        normed = model.final_norm.apply_linear(comps[:, :, pos], scale)  # (C, B, D)
        w_u = model.W_U.float()  # (D, V)
        a = _ids(answer, model, b)
        direction = w_u[:, a].T  # (B, D)
        b_u = model.b_U.float() if model.b_U is not None else torch.zeros(model.cfg.d_vocab)
        const = b_u[a]
        if wrong is not None:
            w = _ids(wrong, model, b)
            direction = direction - w_u[:, w].T
            const = const - b_u[w]
        values = torch.einsum("cbd,bd->cb", normed, direction)  # (C, B)
        bias_term = model.final_norm.bias_term()
        bias = (torch.as_tensor(bias_term, dtype=torch.float32) * direction).sum(-1) + const  # (B,)
        final = cache[f"blocks.{n - 1}.resid_post"][:, pos]  # (B, D)
        pre_cap = model.final_norm(final) @ w_u + b_u  # (B, V)
        total = pre_cap.gather(1, a[:, None].to(pre_cap.device))[:, 0]
        if wrong is not None:
            total = total - pre_cap.gather(1, w[:, None].to(pre_cap.device))[:, 0]
    return DLAResult(values, labels, bias, total, n, model.cfg.n_heads)
