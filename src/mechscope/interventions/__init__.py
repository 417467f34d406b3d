"""Causal interventions: activation and path patching, attribution patching, ablation, metrics."""

from ..metrics import Metric, MetricShapeError, as_metric, kl_div, logit_diff, prob, user_metric
from .ablation import ablate, ablate_attn, ablate_heads, ablate_mlp, ablate_neurons, ablate_positions
from .attribution import AttributionCheck, AttributionResult, attribution_check, attribution_patch
from .patching import (
                       Cell,
                       PatchInputError,
                       activation_patch,
                       patch_attn_out,
                       patch_head_components,
                       patch_heads,
                       patch_mlp_out,
                       patch_resid,
                       patch_sweep,
)
from .path_patching import path_patch, path_patch_heads
from .results import PatchResult, correlation

__all__ = ["AttributionCheck", "AttributionResult", "Cell", "Metric", "MetricShapeError", "PatchInputError",
           "PatchResult", "ablate", "ablate_attn", "ablate_heads", "ablate_mlp", "ablate_neurons",
           "ablate_positions", "activation_patch", "as_metric", "attribution_check", "attribution_patch",
           "correlation", "kl_div", "logit_diff", "patch_attn_out", "patch_head_components", "patch_heads",
           "patch_mlp_out", "patch_resid", "patch_sweep", "path_patch", "path_patch_heads", "prob", "user_metric"]
