"""Probes on whole texts: one pooled activation per text at each hook point, one label per text.

    >>> res = probe_texts(model, texts, labels, ["blocks.3.resid_post", "blocks.6.resid_post"], pooling="mean")
    >>> print(res.result.to_markdown()); res.probes["blocks.6.resid_post"].predict(x)

Pooling: ``"last"`` takes the last token of each text (in a causal model the only one that has seen all of it),
``"mean"`` averages every token of the text (the BOS token, when the model prepends one, is left out: it is the
same in every text). Scores come from :func:`~mechscope.probes.linear.score_activations` (held-out split or k-fold
CV, next to the configured control); the returned probes are then fitted on every example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..models.hooked import HookedModel
from .linear import Probe, ProbeConfig, ProbeResult, fit_probe, score_activations

Pooling = Literal["last", "mean"]
POOLINGS = ("last", "mean")


class TextActivations(NamedTuple):
    acts: dict[str, Float[Tensor, "n d"]]
    """Canonical hook name -> one pooled (flattened) activation per text, float32 on the CPU."""
    last_tokens: Int[Tensor, " n"]
    """Id of each text's last token (what ``control="random_token"`` groups by)."""


def text_activations(model: HookedModel, texts: Sequence[str], hooks: Sequence[str], *, pooling: Pooling = "last",
                     batch_size: int = 16) -> TextActivations:
    """Pooled activations of every text at every hook point, ``batch_size`` texts per forward pass."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    names = [model.resolve(h).name for h in hooks]
    skip_bos = bool(model.cfg.default_prepend_bos)
    pooled: dict[str, list[Tensor]] = {n: [] for n in names}
    last_ids = []
    for start in range(0, len(texts), batch_size):
        tokens = model.tokenize(list(texts[start:start + batch_size]))  # right-padded
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names=names)
        ids = tokens.input_ids.cpu()
        mask = torch.ones_like(ids) if tokens.attention_mask is None else tokens.attention_mask.cpu()
        last = mask.sum(-1) - 1  # (B,)
        rows = torch.arange(ids.shape[0])
        last_ids.append(ids[rows, last])
        if skip_bos:
            only_bos = last == 0  # nothing but BOS: keep it rather than divide by zero
            mask = mask.clone()
            mask[~only_bos, 0] = 0
        m = mask.float()[:, :, None]  # (B, T, 1)
        for n in names:
            a = cache[n].detach().float().cpu().flatten(2)  # (B, T, D)
            pooled[n].append(a[rows, last] if pooling == "last" else (a * m).sum(1) / m.sum(1))
    return TextActivations({n: torch.cat(v) for n, v in pooled.items()}, torch.cat(last_ids))


@dataclass
class TextProbeResult:
    """Scores per hook point and the probes fitted on every example."""

    result: ProbeResult
    """Train / test / control scores per hook point (``layer_labels`` name them)."""
    hooks: list[str]
    """Canonical hook names, in the order of ``result``."""
    probes: dict[str, Probe]
    """Hook name -> probe fitted on all examples (the scores above come from held-out examples)."""
    n_examples: int
    """Number of texts."""

    def view(self):
        """The scores per hook point (:meth:`ProbeResult.view`), with the number of texts."""
        from .. import display

        inner = self.result.view()
        if inner.empty:
            return inner
        return display.panel(f"probe on {self.n_examples} texts", [inner],
                             summary=[("texts", self.n_examples), *inner.summary])

    def _repr_html_(self) -> str:
        return self.view().html()


def probe_texts(model: HookedModel, texts: Sequence[str], labels: Sequence[float] | Tensor, hooks: Sequence[str], *,
                pooling: Pooling = "last", config: ProbeConfig | None = None,
                batch_size: int = 16) -> TextProbeResult:
    """Fit and score a probe per hook point on one pooled activation per text (labels: class ids or values)."""
    cfg = config or ProbeConfig()
    y = torch.as_tensor(labels)
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels; give one label per text")
    if len(texts) < 4:
        raise ValueError(f"{len(texts)} examples are too few to fit and test a probe; give at least 4")
    if cfg.control == "random_token" and pooling != "last":
        raise ValueError("control='random_token' gives each last-token type one random label, so it needs "
                         "pooling='last'; use control='shuffle' with mean pooling")
    y = y.float() if cfg.task == "regression" else y.long()
    if cfg.task == "classification" and len(y.unique()) < 2:
        raise ValueError(f"every text has the same label (class {int(y[0])}); a probe needs at least two classes")
    ta = text_activations(model, texts, hooks, pooling=pooling, batch_size=batch_size)
    names = list(ta.acts)
    points = [model.resolve(n) for n in names]
    same_kind = len({p.kind for p in points}) == 1 and all(p.layer is not None for p in points)
    labels_ = [f"L{p.layer}" for p in points] if same_kind else names
    kind = points[0].kind if same_kind else "hook points"
    result = score_activations([ta.acts[n] for n in names], y, ta.last_tokens, labels_, kind, cfg)
    probes = {n: fit_probe(ta.acts[n], y, cfg.task, cfg.l2, cfg.max_iter) for n in names}
    return TextProbeResult(result, names, probes, len(texts))
