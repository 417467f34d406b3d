"""The attention-pattern view lives in :mod:`mechscope.models.attention_pattern` (the activation cache returns it);
this name stays for existing imports."""

from ..models.attention_pattern import AttentionPattern

__all__ = ["AttentionPattern"]
