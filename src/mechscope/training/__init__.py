"""Training sparse dictionaries: configs, the per-dictionary trainer, the loop with checkpoints and resume, DDP.

    from mechscope.training import DictionarySpec, TrainConfig, train
"""

from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from .config import (DeadLatentConfig, DictionarySpec, LoopConfig, OptimConfig, SparsityConfig, TrainConfig)
from .distributed import DistInfo, init_distributed, shutdown
from .init import geometric_median
from .loop import Run, TrainResult, export_checkpoint, train
from .schedules import lr_factor, warmup_factor
from .trainer import DictionaryTrainer, build_dictionary

__all__ = ["DeadLatentConfig", "DictionarySpec", "DictionaryTrainer", "DistInfo", "LoopConfig", "OptimConfig",
           "Run", "SparsityConfig", "TrainConfig", "TrainResult", "build_dictionary", "export_checkpoint", "geometric_median",
           "init_distributed", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "lr_factor", "shutdown",
           "train", "warmup_factor"]
