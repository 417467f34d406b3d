"""Linear probes on hook points, per layer, with control baselines."""

from .labels import is_capitalised, token_labels
from .linear import Probe, ProbeConfig, ProbeResult, evaluate_probe, fit_probe, probe_layers

__all__ = ["Probe", "ProbeConfig", "ProbeResult", "evaluate_probe", "fit_probe", "is_capitalised", "probe_layers",
           "token_labels"]
