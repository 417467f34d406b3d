"""Linear probes on hook points, per layer, with control baselines."""

from .labels import is_capitalised, token_labels
from .linear import Probe, ProbeConfig, ProbeResult, evaluate_probe, fit_probe, probe_layers, score_activations
from .texts import TextProbeResult, probe_texts, text_activations

__all__ = ["Probe", "ProbeConfig", "ProbeResult", "TextProbeResult", "evaluate_probe", "fit_probe",
           "is_capitalised", "probe_layers", "probe_texts", "score_activations", "text_activations",
           "token_labels"]
