"""Runs killed with SIGKILL and resumed end with bit-identical weights: ``mechscope train`` as a subprocess, and a
DDP run under ``torchrun`` (CPU, gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny import save_model_dir

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"def f{i}(x):\n    return x * {i} + {i * i}\n"})
                              for i in range(400)))
    return path


def _train_argv(model_dir: Path, corpus: Path, out: Path) -> list[str]:
    return ["train", "--model", str(model_dir), "--hook", "blocks.1.resid_post", "--arch", "topk", "--k", "4",
            "--expansion", "2", "--source", str(corpus), "--context-size", "16", "--batch-size", "64",
            "--buffer-rows", "256", "--model-batch", "4", "--steps", "12", "--log-every", "2",
            "--checkpoint-every", "4", "--warmup-steps", "2", "--eval-contexts", "0", "--out", str(out)]


def _worker(stop_at: int, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "kill_worker.py"), str(stop_at), *argv], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "sae_weights.safetensors"))


def test_sigkilled_cli_run_resumes_bit_identical(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    _finish(_worker(0, _train_argv(model_dir, corpus, full)))

    proc = _worker(8, _train_argv(model_dir, corpus, cut))
    line = proc.stdout.readline()  # the checkpoint of step 8 is on disk when this arrives
    assert line.strip() == "CHECKPOINT 8", proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "run.json").exists()  # it really died before the end

    refused = subprocess.run([sys.executable, "-m", "mechscope.cli.main", *_train_argv(model_dir, corpus, cut)],
                             env=ENV, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "Traceback" not in refused.stderr

    _finish(_worker(0, [*_train_argv(model_dir, corpus, cut), "--resume"]))
    name = "topk_blocks.1.resid_post"
    a, b = _weights(full / name), _weights(cut / name)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (cut / "metrics.jsonl").read_text() == (full / "metrics.jsonl").read_text()
    assert json.loads((cut / "run.json").read_text())["steps"] == 12


def _torchrun(out: Path, steps: int, checkpoint_every: int, mode: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(out), "512", str(steps), str(checkpoint_every), mode]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def test_torchrun_run_killed_and_resumed_matches_uninterrupted(tmp_path: Path) -> None:
    """docs/distributed.md: ``--resume`` works under torchrun as on one process."""
    full = _torchrun(tmp_path / "full", 30, 10)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _torchrun(tmp_path / "cut", 30, 10, "17")
    assert killed.returncode != 0 and not (tmp_path / "cut" / "run.json").exists()
    ckpts = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert ckpts == ["step_00000010"]
    resumed = _torchrun(tmp_path / "cut", 30, 10, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("topk", "relu"):
        a, b = _weights(tmp_path / "full" / name), _weights(tmp_path / "cut" / name)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key, (a[key] - b[key]).abs().max())
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()
