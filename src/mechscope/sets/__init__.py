"""Full dictionary sets for a model (a transcoder at every MLP), built once and cached under ``MECHSCOPE_HOME``."""

from .build import SetConfig, build_transcoder_set
from .store import TranscoderSet, TranscoderSetError, find_transcoder_set, set_dir

__all__ = ["SetConfig", "TranscoderSet", "TranscoderSetError", "build_transcoder_set", "find_transcoder_set",
           "set_dir"]
