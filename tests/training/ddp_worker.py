"""Run under ``torchrun --nproc_per_node=N``: train on toy activations with DDP, rank 0 writes the run folder.

Usage: ddp_worker.py OUT GLOBAL_BATCH STEPS [CHECKPOINT_EVERY [KILL_AT | resume]]

``KILL_AT``: every rank SIGKILLs itself after that step (a run killed mid-way); ``resume``: continue the run in OUT.
"""

import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from helpers import ddp_config, ddp_specs, sparse_data  # noqa: E402

from mechscope.activations import ActivationStore, StoreConfig  # noqa: E402
from mechscope.training import init_distributed, shutdown, train  # noqa: E402


def main() -> None:
    out, global_batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    checkpoint_every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    mode = sys.argv[5] if len(sys.argv) > 5 else ""
    info = init_distributed()
    h = sparse_data()
    store = ActivationStore.from_tensors({"toy": h}, StoreConfig(batch_size=global_batch // info.world_size,
                                                                 buffer_rows=4096, shuffle=False),
                                         rank=info.rank, world_size=info.world_size)
    cfg = ddp_config(steps)
    cfg.loop.checkpoint_every = checkpoint_every

    def kill(step: int, run) -> None:  # noqa: ANN001
        if mode.isdigit() and step == int(mode):
            os.kill(os.getpid(), signal.SIGKILL)

    train(store, ddp_specs(), cfg, out=out, info=info, resume=mode == "resume", callbacks=[kill])
    shutdown()


if __name__ == "__main__":
    main()
