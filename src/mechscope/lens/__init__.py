"""Lenses on the residual stream: logit lens, tuned lens, direct logit attribution."""

from .dla import DLAResult, direct_logit_attribution
from .logit_lens import LensResult, logit_lens, unembed
from .tuned import LensComparison, TunedLens, TunedLensConfig, TunedLensFileError, compare_lenses, train_tuned_lens

__all__ = ["DLAResult", "LensComparison", "LensResult", "TunedLens", "TunedLensConfig", "TunedLensFileError",
           "compare_lenses",
           "direct_logit_attribution", "logit_lens", "train_tuned_lens", "unembed"]
