"""Loading Hugging Face causal LMs and hooking them at canonical points."""

from .adapters import UnsupportedArchitectureError, supported_model_types
from .hook_points import HookNameError
from .hooked import HookedModel
from .hooking import Hook, HookReturnError
from .tokens import Tokens

__all__ = ["Hook", "HookNameError", "HookReturnError", "HookedModel", "Tokens", "UnsupportedArchitectureError",
           "supported_model_types"]
