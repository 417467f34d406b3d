"""Causal interventions: activation and path patching, attribution patching, ablation, metrics."""

from .metrics import Metric, MetricShapeError, as_metric, kl_div, logit_diff, prob, user_metric
from .patching import (Cell, PatchInputError, activation_patch, patch_attn_out, patch_head_components, patch_heads,
                       patch_mlp_out, patch_resid, patch_sweep)
from .results import PatchResult, correlation

__all__ = ["Cell", "Metric", "MetricShapeError", "PatchInputError", "PatchResult", "activation_patch",
           "as_metric", "correlation", "kl_div", "logit_diff", "patch_attn_out", "patch_head_components",
           "patch_heads", "patch_mlp_out", "patch_resid", "patch_sweep", "prob", "user_metric"]
