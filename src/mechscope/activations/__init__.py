"""Cached activations and their decompositions; harvesting to disk."""

from .cache import ActivationCache

__all__ = ["ActivationCache"]
