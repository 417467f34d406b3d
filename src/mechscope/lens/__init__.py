"""Lenses on the residual stream: logit lens, tuned lens, direct logit attribution."""

from .dla import DLAResult, direct_logit_attribution
from .logit_lens import LensResult, logit_lens, unembed

__all__ = ["DLAResult", "LensResult", "direct_logit_attribution", "logit_lens", "unembed"]
