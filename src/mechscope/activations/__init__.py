"""Cached activations and their decompositions; harvesting to disk."""

from .cache import ActivationCache
from .shards import Manifest, ShardChecksumError, ShardError, read_shards, verify
from .store import ActivationStore, MixingBuffer, StoreConfig, harvest, harvest_to_disk

__all__ = ["ActivationCache", "ActivationStore", "Manifest", "MixingBuffer", "ShardChecksumError", "ShardError",
           "StoreConfig", "harvest", "harvest_to_disk", "read_shards", "verify"]
