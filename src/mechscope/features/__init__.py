"""Features of sparse dictionaries: statistics, top examples, logit effects, a searchable database, dashboards,
steering, autointerp and monitors. Works from encode functions at hook points (:class:`FeatureSource`)."""

from .autointerp import AutointerpConfig, Interpretation, ScorerResult, explain, interpret
from .dashboards import write_dashboards
from .db import FeatureCard, FeatureDB, FeatureDBError, build_database
from .llm import LLMError, LocalClient, OpenAIClient
from .logits import LogitEffects, TokenScore, logit_effects, nearest_features, top_input_tokens
from .monitor import FeatureMonitor, Firing, MonitorResult
from .source import FeatureError, FeatureSource, token_batches
from .stats import Example, FeatureStats, StatsAccumulator, StatsConfig, feature_stats
from .steering import SteeringResult, SteeringVector, clamped, contrastive_vector, feature_vector, steer

__all__ = ["AutointerpConfig", "Example", "FeatureCard", "FeatureDB", "FeatureDBError", "FeatureError",
           "FeatureMonitor", "FeatureSource",
           "FeatureStats", "Firing", "Interpretation", "LLMError", "LocalClient", "LogitEffects", "MonitorResult",
           "OpenAIClient", "ScorerResult", "StatsAccumulator", "StatsConfig", "SteeringResult", "SteeringVector",
           "TokenScore", "build_database", "clamped", "contrastive_vector", "explain", "feature_stats",
           "feature_vector", "interpret", "logit_effects", "nearest_features", "steer", "token_batches",
           "top_input_tokens", "write_dashboards"]
