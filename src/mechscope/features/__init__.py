"""Features of sparse dictionaries: statistics, top examples, logit effects, a searchable database, dashboards,
steering, autointerp and monitors. Works from encode functions at hook points (:class:`FeatureSource`)."""

from .db import FeatureCard, FeatureDB, build_database
from .logits import LogitEffects, TokenScore, logit_effects, nearest_features, top_input_tokens
from .source import FeatureError, FeatureSource, token_batches
from .stats import Example, FeatureStats, StatsAccumulator, StatsConfig, feature_stats

__all__ = ["Example", "FeatureCard", "FeatureDB", "FeatureError", "FeatureSource", "FeatureStats", "LogitEffects",
           "StatsAccumulator", "StatsConfig", "TokenScore", "build_database", "feature_stats", "logit_effects",
           "nearest_features", "token_batches", "top_input_tokens"]
