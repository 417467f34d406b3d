"""Circuits: the replacement model, attribution graphs, interventions on them, ACDC and weight-based circuits.

    from mechscope.circuits import attribute, ReplacementModel
    graph = attribute(model, transcoders, "The capital of France is")
    graph.replacement_score, graph.completeness_score      # circuit-tracer's graph scores
    graph.write_json("out/graph.json")
    check = faithfulness(model, transcoders, "The capital of France is", " Paris")   # predictions vs interventions
"""

from .attribution import AttributionConfig, attribute, feature_node_index
from .faithfulness import (
                           Agreement,
                           FaithfulnessConfig,
                           FaithfulnessResult,
                           FeatureRow,
                           GroupCheck,
                           faithfulness,
                           predict_change,
                           total_effects,
)
from .graph import AttributionGraph, PruneResult, feature_supernodes, merge_supernodes
from .interventions import (
                           AblationStudy,
                           FeatureIntervention,
                           ablation_study,
                           predict_ablation,
                           real_logits,
                           replacement_values,
)
from .replacement import FrozenState, ReplacementModel
from .scores import GraphScores, graph_scores
from .transcoders import TranscoderStack

__all__ = ["AblationStudy", "Agreement", "AttributionConfig", "AttributionGraph", "FaithfulnessConfig",
           "FaithfulnessResult", "FeatureIntervention", "FeatureRow", "FrozenState", "GraphScores", "GroupCheck",
           "PruneResult", "ReplacementModel", "TranscoderStack", "ablation_study", "attribute", "faithfulness",
           "feature_node_index", "feature_supernodes", "graph_scores", "merge_supernodes", "predict_ablation",
           "predict_change", "real_logits", "replacement_values", "total_effects"]
