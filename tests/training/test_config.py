"""Config validation, schedules, geometric median, checkpoints written atomically."""

from dataclasses import fields
from pathlib import Path

import pytest
import torch

from mechscope.cli.options import field_docs
from mechscope.training import (DeadLatentConfig, DictionarySpec, LoopConfig, OptimConfig, SparsityConfig,
                                TrainConfig, geometric_median, list_checkpoints, lr_factor, warmup_factor)
from mechscope.training.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("cls", [DictionarySpec, OptimConfig, SparsityConfig, DeadLatentConfig, LoopConfig,
                                 TrainConfig])
def test_every_field_documented(cls) -> None:
    docs = field_docs(cls)
    assert [f.name for f in fields(cls) if not docs.get(f.name)] == []


@pytest.mark.parametrize("bad, match", [
    (lambda: OptimConfig(lr=0), "lr"), (lambda: OptimConfig(beta2=1.5), "beta2"),
    (lambda: LoopConfig(steps=0), "steps"), (lambda: DictionarySpec("topk", k=0), "k"),
    (lambda: DictionarySpec("topkk"), "unknown arch"), (lambda: DictionarySpec("transcoder", hook="a"), "hook_out"),
    (lambda: DictionarySpec("relu", hook="a", hook_out="b"), "hook_out"),
    (lambda: DeadLatentConfig(dead_after_tokens=0), "dead_after_tokens"),
])
def test_invalid_values_raise(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def test_train_config_from_dicts() -> None:
    cfg = TrainConfig(optim={"lr": 1e-3}, loop={"steps": 5})
    assert cfg.optim.lr == 1e-3 and cfg.loop.steps == 5


def test_lr_schedule_shape() -> None:
    cfg = OptimConfig(warmup_steps=10, decay_fraction=0.5, final_lr_fraction=0.0)
    f = [lr_factor(s, 100, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[49] == 1.0
    assert f[-1] == pytest.approx(0.0) and all(a >= b for a, b in zip(f[50:], f[51:]))
    assert warmup_factor(0, 4) == 0.25 and warmup_factor(10, 4) == 1.0 and warmup_factor(0, 0) == 1.0


def test_geometric_median_resists_outliers() -> None:
    x = torch.randn(200, 3) * 0.1
    x[:20] += 100.0  # 10% far outliers
    med = geometric_median(x)
    assert med.norm() < 1.0 < x.mean(0).norm()


def test_checkpoints_atomic_and_pruned(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"a": torch.ones(2)}, {"x": step}, keep=2)
    (tmp_path / "step_00000009").mkdir()  # a half-written folder without state files is ignored
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary or set-aside folder
    assert (tmp_path / "step_00000003").stat().st_mode & 0o777 == 0o755  # shared like the run's other outputs
    save_checkpoint(tmp_path, 3, {"a": torch.zeros(2)}, {"x": 4}, keep=2)  # an existing step is replaced whole
    assert load_checkpoint(tmp_path / "step_00000003")[1]["x"] == 4
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
