"""Circuits: the replacement model, attribution graphs, interventions on them, ACDC and weight-based circuits.

    from mechscope.circuits import attribute, ReplacementModel
    graph = attribute(model, transcoders, "The capital of France is")
    graph.write_json("out/graph.json")
"""

from .attribution import AttributionConfig, attribute, feature_node_index
from .graph import AttributionGraph, PruneResult, feature_supernodes, merge_supernodes
from .interventions import (AblationStudy, FeatureIntervention, ablation_study, predict_ablation, real_logits,
                            replacement_values)
from .replacement import FrozenState, ReplacementModel
from .transcoders import TranscoderStack

__all__ = ["AblationStudy", "AttributionConfig", "AttributionGraph", "FeatureIntervention", "FrozenState",
           "PruneResult", "ReplacementModel", "TranscoderStack", "ablation_study", "attribute", "feature_node_index",
           "feature_supernodes", "merge_supernodes", "predict_ablation", "real_logits", "replacement_values"]
