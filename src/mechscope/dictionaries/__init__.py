"""Sparse dictionaries: SAEs (ReLU, TopK, BatchTopK, JumpReLU, Gated), transcoders, crosscoders and cross-layer
transcoders; SAELens-layout files, converters from other public layouts, and splicing into a model.

    import mechscope as ms
    sae = ms.dictionaries.create("topk", d_in=512, d_sae=4096, k=32, hook_name="blocks.6.resid_post")
    sae.save("out/sae")
    sae = ms.dictionaries.load("out/sae")          # or "hf://owner/repo/folder", params.npz, ae.pt, ...
    sae = ms.dictionaries.load_pretrained("gemma-scope-2b-pt-res", "layer_12/width_16k/canonical")   # by name
    f = sae.encode(x); x_hat = sae.decode(f)
    with ms.dictionaries.spliced(model, sae, keep_error=True): ...
"""

from .base import Dictionary, DictionaryConfig, DictionaryOptions, DictionaryOutput
from .clt import CrossLayerTranscoder
from .converters import (
                         load_dictionary_learning,
                         load_gemma_scope,
                         load_llama_scope,
                         load_sparsify,
                         load_transcoder_set,
                         save_transcoder_set,
)
from .crosscoder import Crosscoder
from .errors import (
                         DictionaryConfigError,
                         DictionaryError,
                         DictionaryFormatError,
                         DictionaryModelError,
                         DictionaryNotFoundError,
                         DictionaryShapeError,
                         UnknownArchitectureError,
)
from .gated import GatedDictionary
from .io import load, parse_hub_path, save
from .jumprelu import JumpReLUDictionary
from .pretrained import PretrainedNotFoundError, get_release, list_releases, load_pretrained
from .registry import create, get_class, names, register
from .releases import RELEASES, Release
from .relu import ReLUDictionary
from .scale import fit_feature_scale, norm_scale
from .splice import Splice, SpliceState, spliced
from .topk import BatchTopKDictionary, TopKDictionary, sparse_decode
from .transcoder import create_mlp_transcoder

__all__ = [
    "BatchTopKDictionary", "Crosscoder", "CrossLayerTranscoder", "Dictionary", "DictionaryConfig",
    "DictionaryConfigError", "DictionaryError", "DictionaryFormatError", "DictionaryNotFoundError",
    "DictionaryOptions", "DictionaryOutput", "DictionaryModelError", "DictionaryShapeError", "GatedDictionary",
    "JumpReLUDictionary",
    "PretrainedNotFoundError", "RELEASES", "ReLUDictionary", "Release", "get_release", "list_releases",
    "load_llama_scope", "load_pretrained", "Splice", "SpliceState", "TopKDictionary", "UnknownArchitectureError",
    "create",
    "create_mlp_transcoder", "fit_feature_scale", "get_class", "load", "load_dictionary_learning",
    "load_gemma_scope", "load_sparsify", "load_transcoder_set", "names", "norm_scale", "parse_hub_path", "register",
    "save", "save_transcoder_set", "sparse_decode", "spliced",
]
