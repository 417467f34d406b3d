"""The activation cache lives in :mod:`mechscope.models.cache` (``run_with_cache`` builds it, and models sit below
activations); this name stays for existing imports."""

from ..models.cache import ActivationCache

__all__ = ["ActivationCache"]
