"""Training sparse dictionaries: configs, the per-dictionary trainer, the loop with checkpoints and resume, DDP.

    from mechscope.training import DictionarySpec, TrainConfig, train
"""

from .checkpoint import CheckpointError, latest_checkpoint, latest_valid_checkpoint, list_checkpoints, load_checkpoint
from .config import DeadLatentConfig, DictionarySpec, LoopConfig, OptimConfig, SparsityConfig, TrainConfig
from .distributed import DistInfo, init_distributed, shutdown
from .init import geometric_median
from .loop import Run, RunFolderError, TrainResult, check_run_folder, export_checkpoint, train
from .schedules import lr_factor, warmup_factor
from .trainer import DictionaryTrainer, build_dictionary

__all__ = ["CheckpointError", "RunFolderError", "check_run_folder", "latest_valid_checkpoint", "DeadLatentConfig",
           "DictionarySpec", "DictionaryTrainer", "DistInfo", "LoopConfig", "OptimConfig",
           "Run", "SparsityConfig", "TrainConfig", "TrainResult", "build_dictionary", "export_checkpoint",
           "geometric_median",
           "init_distributed", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "lr_factor", "shutdown",
           "train", "warmup_factor"]
