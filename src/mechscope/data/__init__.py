"""Text data: sources (HF datasets, local files, the built-in stdlib corpus) and packing into token contexts."""

from .packing import PackConfig, batched, pack, rank_slice, special_ids, train_mask
from .sources import DataSourceError, hf_dataset, local_files, open_source, stdlib_corpus, stdlib_files

__all__ = ["DataSourceError", "PackConfig", "batched", "hf_dataset", "local_files", "open_source", "pack",
           "rank_slice", "special_ids", "stdlib_corpus", "stdlib_files", "train_mask"]
