"""The patching metrics live in :mod:`mechscope.metrics` (a leaf module, so ``data`` prompts can build their metric
without importing interventions); this name stays for existing imports."""

from ..metrics import (
    Metric,
    MetricShapeError,
    as_metric,
    check_metric_output,
    kl_div,
    kl_divergence,
    logit_diff,
    prob,
    user_metric,
)

__all__ = ["Metric", "MetricShapeError", "as_metric", "check_metric_output", "kl_div", "kl_divergence", "logit_diff",
           "prob", "user_metric"]
