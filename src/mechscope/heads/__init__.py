"""Attention-head detectors (previous-token, induction, duplicate-token, attention sink)."""

from .detectors import (
    KINDS,
    HeadScores,
    column_score,
    diagonal_score,
    head_scores,
    pairs_score,
    scores_from_pattern,
)

__all__ = ["KINDS", "HeadScores", "column_score", "diagonal_score", "head_scores", "pairs_score", "scores_from_pattern"]
