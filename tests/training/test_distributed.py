"""``torchrun --nproc_per_node=2`` on CPU (gloo) gives the same dictionaries as one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .helpers import ddp_config, ddp_specs, sparse_data

import mechscope as ms
from mechscope.activations import ActivationStore, StoreConfig
from mechscope.training import train

SPECS = ddp_specs()
config = ddp_config


def test_torchrun_two_ranks_match_one_process(tmp_path: Path) -> None:
    global_batch, steps = 512, 30
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(tmp_path / "ddp"), str(global_batch), str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    h = sparse_data()
    store = ActivationStore.from_tensors({"toy": h}, StoreConfig(batch_size=global_batch, buffer_rows=4096,
                                                                 shuffle=False))
    single = train(store, SPECS, config(steps), out=tmp_path / "single")
    for name in single.dictionaries:
        d = ms.dictionaries.load(tmp_path / "single" / name)  # both as saved (normalisation folded in)
        ddp = ms.dictionaries.load(tmp_path / "ddp" / name)
        for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
            a, b = getattr(d, key).detach(), getattr(ddp, key).detach()
            assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), (name, key, (a - b).abs().max())
        # a different run (other seed) is far away, so the tolerance above means something
    assert (tmp_path / "ddp" / "metrics.jsonl").is_file()
    assert not (tmp_path / "ddp" / "metrics.jsonl").read_text().count('"step": 0,')


@pytest.mark.parametrize("seed", [1])
def test_other_seed_differs(seed: int) -> None:
    h = sparse_data()
    store = ActivationStore.from_tensors({"toy": h}, StoreConfig(batch_size=512, buffer_rows=4096, shuffle=False))
    a = train(store, SPECS[0], config(5)).dictionaries["topk"]
    cfg = config(5)
    cfg.loop.seed = seed
    b = train(store, SPECS[0], cfg).dictionaries["topk"]
    assert (a.W_dec - b.W_dec).abs().max() > 1e-2
