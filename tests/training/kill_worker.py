"""``mechscope train ARGS...`` that stops dead once the checkpoint of step STOP_AT is on disk: it prints
``CHECKPOINT STOP_AT`` and sleeps until the test SIGKILLs it (STOP_AT 0: train normally).

Usage: kill_worker.py STOP_AT train ARGS...
"""

import sys
import time

import mechscope.training.loop as loop
from mechscope.cli.main import main

STOP_AT = int(sys.argv[1])
_save = loop.save_checkpoint


def save_then_hang(folder, step, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    path = _save(folder, step, *args, **kwargs)
    if step == STOP_AT:
        print(f"CHECKPOINT {step}", flush=True)
        time.sleep(3600)
    return path


loop.save_checkpoint = save_then_hang

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
