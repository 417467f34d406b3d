"""Text data: sources (named offline corpora and mixtures, HF datasets, local files) and packing into token contexts.

Named sources (see :mod:`mechscope.data.specs`): ``prose`` (Python documentation + fortunes, fetched once with
``mechscope data fetch prose``), ``code`` (the Python standard library), ``stdlib`` (the historical code stream),
``mixture`` (70% prose, 30% code by characters); ``NAME@heldout`` reads a deterministic 5% held-out split.
"""

from .corpora import CorpusFetchError, fetch_prose, prose_corpus, prose_dir, prose_manifest, prose_records
from .packing import PackConfig, batched, pack, rank_slice, special_ids, train_mask
from .sources import DataSourceError, code_corpus, hf_dataset, local_files, open_source, stdlib_corpus, stdlib_files
from .specs import DEFAULT_MIXTURE, NAMED_MIXTURES, NAMED_SOURCES, SOURCE_HELP, mixture_components, source_names
from .splits import HELDOUT_FRACTION, SPLITS, mixture, split_of

__all__ = ["CorpusFetchError", "DEFAULT_MIXTURE", "DataSourceError", "HELDOUT_FRACTION", "NAMED_MIXTURES",
           "NAMED_SOURCES", "PackConfig", "SOURCE_HELP", "SPLITS", "batched", "code_corpus", "fetch_prose",
           "hf_dataset", "local_files", "mixture", "mixture_components", "open_source", "pack", "prose_corpus",
           "prose_dir", "prose_manifest", "prose_records", "rank_slice", "source_names", "special_ids",
           "split_of", "stdlib_corpus", "stdlib_files", "train_mask"]
