"""Patching metrics: functions from logits to one value per prompt, with shape validation.

A metric maps logits ``(batch, pos, vocab)`` to a tensor of shape ``(batch,)`` (one value per prompt) or a scalar
``()`` (already reduced over the batch). Sweeps call it on one slice of ``batch`` rows per patched variant, so
per-prompt targets (answer ids, reference distributions) line up with the rows they are given.

    >>> metric = logit_diff(answer=io_ids, wrong=s_ids)          # IO minus S at the last position
    >>> metric = prob(target=io_ids)
    >>> metric = kl_div(reference=clean_logits)                   # KL(reference || patched) at the last position
    >>> metric = user_metric(lambda logits: logits[:, -1, 42])   # any function, validated the same way
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


class MetricShapeError(ValueError):
    """A metric returned something other than one value per prompt or a scalar."""


Positions = "int | Tensor"


def _ids(x: int | Sequence[int] | Tensor) -> Tensor:
    t = torch.as_tensor(x, dtype=torch.long)
    return t.reshape(-1)


def _at(logits: Tensor, pos: int | Tensor) -> Float[Tensor, "batch vocab"]:
    """Logits at ``pos`` (an int or one position per row)."""
    if isinstance(pos, int):
        return logits[:, pos]  # (B, V)
    pos = torch.as_tensor(pos, device=logits.device).reshape(-1)
    if pos.numel() == 1:
        return logits[:, int(pos)]
    if pos.numel() != logits.shape[0]:
        raise MetricShapeError(f"metric has {pos.numel()} positions but the logits have {logits.shape[0]} rows")
    return logits[torch.arange(logits.shape[0], device=logits.device), pos]


def _rows(ids: Tensor, batch: int, what: str) -> Tensor:
    if ids.numel() == 1:
        return ids.expand(batch)
    if ids.numel() != batch:
        raise MetricShapeError(f"metric has {ids.numel()} {what} ids but the logits have {batch} rows "
                               f"(give one id, or one per prompt)")
    return ids


@dataclass(frozen=True)
class Metric:
    """A named metric. ``fn(logits)`` returns ``(batch,)`` or ``()``; calling validates the result."""

    fn: Callable[[Tensor], Tensor]
    name: str = "metric"

    def __call__(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, " batch"] | Float[Tensor, ""]:
        out = self.fn(logits)
        return check_metric_output(out, logits.shape[0], self.name)


def check_metric_output(out: object, batch: int, name: str = "metric") -> Tensor:
    """Validate a metric's output: a float tensor of shape ``(batch,)`` or ``()``; raise naming what is valid."""
    if not isinstance(out, Tensor):
        raise MetricShapeError(f"{name} returned {type(out).__name__}; it must return a tensor of shape "
                               f"({batch},) (one value per prompt) or () (a scalar)")
    if out.shape not in (torch.Size([batch]), torch.Size([])):
        raise MetricShapeError(f"{name} returned shape {tuple(out.shape)} for logits with {batch} prompts; "
                               f"it must return ({batch},) (one value per prompt) or () (a scalar)")
    if not out.is_floating_point():
        raise MetricShapeError(f"{name} returned dtype {out.dtype}; it must return floating point values")
    return out


def as_metric(metric: Callable[[Tensor], Tensor] | Metric) -> Metric:
    """Wrap a plain function as a validated :class:`Metric`."""
    if isinstance(metric, Metric):
        return metric
    if not callable(metric):
        raise TypeError(f"metric must be callable (logits -> (batch,) or ()), got {type(metric).__name__}")
    return Metric(metric, getattr(metric, "__name__", "metric"))


def logit_diff(answer: int | Sequence[int] | Tensor, wrong: int | Sequence[int] | Tensor,
               pos: int | Tensor = -1) -> Metric:
    """Logit of ``answer`` minus logit of ``wrong`` at ``pos``, per prompt (ids: one, or one per prompt)."""
    a, w = _ids(answer), _ids(wrong)

    def fn(logits: Tensor) -> Tensor:
        at = _at(logits, pos)  # (B, V)
        b = at.shape[0]
        rows = torch.arange(b, device=at.device)
        return at[rows, _rows(a, b, "answer").to(at.device)] - at[rows, _rows(w, b, "wrong").to(at.device)]

    return Metric(fn, "logit_diff")


def prob(target: int | Sequence[int] | Tensor, pos: int | Tensor = -1) -> Metric:
    """Probability of ``target`` at ``pos``, per prompt."""
    t = _ids(target)

    def fn(logits: Tensor) -> Tensor:
        p = _at(logits, pos).float().softmax(-1)  # (B, V)
        b = p.shape[0]
        return p[torch.arange(b, device=p.device), _rows(t, b, "target").to(p.device)]

    return Metric(fn, "prob")


def kl_divergence(ref_logp: Tensor, logp: Tensor) -> Tensor:
    """KL(ref || q) over the last dimension from log-probabilities: ``sum exp(ref_logp) * (ref_logp - logp)``
    (shapes broadcast). The one KL of mechscope: patching metrics, lenses and ACDC use it."""
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


def kl_div(reference: Float[Tensor, "batch pos vocab"] | Float[Tensor, "batch vocab"], pos: int | Tensor = -1
           ) -> Metric:
    """KL(reference || patched) at ``pos``, per prompt. ``reference`` is logits (full or at ``pos`` already)."""
    ref = reference if reference.ndim == 2 else _at(reference, pos)
    ref_logp = ref.detach().float().log_softmax(-1)  # (B, V)

    def fn(logits: Tensor) -> Tensor:
        logp = _at(logits, pos).float().log_softmax(-1)
        if logp.shape != ref_logp.shape:
            raise MetricShapeError(f"kl_div reference has shape {tuple(ref_logp.shape)} (batch, vocab) but the "
                                   f"patched logits give {tuple(logp.shape)}")
        return kl_divergence(ref_logp.to(logp.device), logp)

    return Metric(fn, "kl_div")


def user_metric(fn: Callable[[Tensor], Tensor], name: str | None = None) -> Metric:
    """Any function of the logits, validated like the built-in metrics."""
    return Metric(fn, name or getattr(fn, "__name__", "metric"))
