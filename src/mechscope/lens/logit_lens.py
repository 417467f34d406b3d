"""Logit lens: decode the residual stream entering every block with the model's own final norm and unembedding.

    >>> lens = logit_lens(model, "The Eiffel Tower is in the city of")
    >>> lens.top_k(k=3, pos=-1)          # per layer: [(token, prob), ...]
    >>> lens.rank(" Paris", pos=-1)      # per layer rank of a target token
    >>> lens.kl_to_final()               # (layers, batch, pos)
    >>> lens.plot_kl("kl.png")

Layer ``L`` is ``resid_pre[L]``; the last row, ``final``, is the final residual, whose lens logits are the model's
own logits. The same decoding (:func:`unembed`) serves the tuned lens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from ..metrics import kl_divergence
from ..models.hooked import HookedModel
from ..models.tokens import Inputs, Tokens


def softcap(model: HookedModel) -> float | None:
    """The final logit soft-capping of Gemma 2/3 (None elsewhere)."""
    return getattr(model.hf.config, "final_logit_softcapping", None)


def unembed(model: HookedModel, resid: Float[Tensor, "... d_model"], *, norm: bool = True
            ) -> Float[Tensor, "... vocab"]:
    """Logits of residual vectors through the final norm (recomputed on ``resid``), the unembedding and any
    soft-capping: exactly the model's head applied to ``resid``."""
    x = model.final_norm(resid) if norm else resid.float()  # (..., D)
    w_u = model.W_U  # (D, V), with any logit multiplier folded in (Granite, Cohere)
    logits = x.to(w_u.dtype) @ w_u  # (..., V)
    if model.b_U is not None:
        logits = logits + model.b_U
    cap = softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def layer_labels(model: HookedModel) -> list[str]:
    return [f"L{layer}" for layer in range(model.cfg.n_layers)] + ["final"]


@dataclass
class LensResult:
    """Per-layer logits ``(layers, batch, pos, vocab)`` of a lens, with the tokens they were computed on."""

    logits: Float[Tensor, "layers batch pos vocab"]
    layer_labels: list[str]
    tokens: Tokens
    model: HookedModel
    name: str = "logit lens"

    def log_probs(self) -> Float[Tensor, "layers batch pos vocab"]:
        return self.logits.float().log_softmax(-1)

    def kl_to_final(self, final: Tensor | None = None) -> Float[Tensor, "layers batch pos"]:
        """KL(final || layer) per layer and position; ``final`` defaults to the last row (the model's logits)."""
        logp = self.log_probs()
        ref = logp[-1] if final is None else final.float().log_softmax(-1)
        return kl_divergence(ref, logp)

    def mean_kl(self, final: Tensor | None = None) -> Float[Tensor, " layers"]:
        """KL to the final distribution per layer, averaged over prompts and real (unpadded) positions."""
        kl = self.kl_to_final(final)  # (L, B, T)
        m = self.tokens.attention_mask
        if m is None:
            return kl.mean((1, 2))
        w = m.to(kl.dtype)
        return (kl * w).sum((1, 2)) / w.sum()

    def top_k(self, k: int = 5, pos: int = -1, prompt: int = 0) -> list[list[tuple[str, float]]]:
        """Top-``k`` (token, probability) per layer at ``pos`` of ``prompt``."""
        vocab, (_, n_prompts, n_pos, _) = self.logits.shape[-1], self.logits.shape
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocab:
            raise ValueError(f"k must be an integer in 1..{vocab} (the vocabulary size), got {k!r}")
        if not -n_prompts <= prompt < n_prompts:
            raise IndexError(f"prompt {prompt} is out of range: the lens holds {n_prompts} prompt(s)")
        if not -n_pos <= pos < n_pos:
            raise IndexError(f"pos {pos} is out of range: the prompts have {n_pos} positions")
        p = self.logits[:, prompt, pos].float().softmax(-1)  # (L, V)
        vals, ids = p.topk(k, -1)
        return [[(self.model.to_string([i]), float(v)) for v, i in zip(vr, ir)] for vr, ir in zip(vals, ids)]

    def rank(self, target: str | int, pos: int = -1, prompt: int = 0) -> Tensor:
        """Rank (0 = top) of ``target`` per layer at ``pos``; a string must be a single token."""
        tid = self.model.to_single_token(target) if isinstance(target, str) else int(target)
        lg = self.logits[:, prompt, pos]  # (L, V)
        return (lg > lg[:, tid:tid + 1]).sum(-1)

    def plot_kl(self, path: str | Path | None = None, other: LensResult | None = None):
        """Mean KL to the final distribution per layer (next to ``other``, e.g. a tuned lens)."""
        from ..display.figures import line_plot

        series = {self.name: self.mean_kl().tolist()}
        if other is not None:
            series[other.name] = other.mean_kl().tolist()
        return line_plot(series, self.layer_labels, title="KL to the final distribution", ylabel="KL (nats)",
                         path=path)

    def plot_probs(self, target: str | int, path: str | Path | None = None, prompt: int = 0):
        """Heatmap of the probability of ``target`` per layer × position."""
        from ..display.figures import heatmap
        from ..interventions.patching import position_labels

        tid = self.model.to_single_token(target) if isinstance(target, str) else int(target)
        p = self.logits[:, prompt].float().softmax(-1)[..., tid]  # (L, T)
        return heatmap(p, self.layer_labels, position_labels(self.model, self.tokens), diverging=False,
                       title=f"{self.name}: p({target!r})", colorbar_label="probability", path=path)


    def view(self, prompt: int = 0, max_positions: int = 48):
        """Interactive views (:mod:`mechscope.display`): the top token and its probability per layer × position
        of ``prompt`` (the last ``max_positions`` positions), and the mean KL to the final distribution."""
        from .. import display
        from ..interventions.patching import position_labels

        title = f"{self.name}"
        if self.logits.numel() == 0 or self.logits.shape[2] == 0:
            return display.empty(title, "no positions were decoded (empty input)")
        p = self.logits[:, prompt, -max_positions:].float().softmax(-1)  # (L, T, V)
        top_p, top_i = p.max(-1)  # (L, T)
        text = [[self.model.to_string([int(i)]) for i in row] for row in top_i]
        labels = position_labels(self.model, self.tokens) if prompt == 0 else list(map(str, range(p.shape[1])))
        cols = labels[-top_p.shape[1]:]
        hm = display.heatmap(top_p, self.layer_labels, cols, title=f"{self.name}: top token per layer × position",
                             value_name="probability of the top token", diverging=False, cell_text=text)
        kl = display.line_plot({self.name: self.mean_kl().tolist()}, self.layer_labels,
                               title="mean KL to the final distribution", y_label="KL (nats)")
        final = [(f"top at {cols[-1]} ({lab})", f"{text[i][-1]!r} p={top_p[i, -1]:.3g}")
                 for i, lab in list(enumerate(self.layer_labels))[-3:]]
        return display.panel(title, [hm, kl], summary=final)

    def _repr_html_(self) -> str:
        return self.view().html()


def residuals(model: HookedModel, inputs: Inputs) -> tuple[Float[Tensor, "layers batch pos d_model"], Tokens]:
    """The residual entering every block plus the final residual, and the tokens."""
    n = model.cfg.n_layers
    names = [f"blocks.{layer}.resid_pre" for layer in range(n)] + [f"blocks.{n - 1}.resid_post"]
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names=names)
    stack, _ = cache.accumulated_resid()  # (L+1, B, T, D)
    return stack, cache.tokens


def logit_lens(model: HookedModel, inputs: Inputs) -> LensResult:
    """Logit lens over every layer of ``inputs``."""
    stack, tokens = residuals(model, inputs)
    with torch.no_grad():
        logits = unembed(model, stack)  # (L+1, B, T, V)
    return LensResult(logits, layer_labels(model), tokens, model)
