"""A run killed mid-way and resumed from its last checkpoint ends with the same weights as an uninterrupted run."""

from pathlib import Path

import pytest
import torch

from .helpers import sparse_data, weights

from mechscope.activations import ActivationStore, StoreConfig
from mechscope.training import (DeadLatentConfig, DictionarySpec, LoopConfig, OptimConfig, TrainConfig,
                                latest_checkpoint, train)

SPECS = [DictionarySpec("topk", hook="x", d_sae=64, k=4, name="topk"),
         DictionarySpec("relu", hook="x", d_sae=64, name="relu"),
         DictionarySpec("jumprelu", hook="x", d_sae=64, name="jumprelu", sparsity_coefficient=0.1)]


class Killed(RuntimeError):
    pass


def _store() -> ActivationStore:
    return ActivationStore.from_tensors({"x": sparse_data()}, StoreConfig(batch_size=256, buffer_rows=2048, seed=3))


def _cfg() -> TrainConfig:
    # small dead threshold and resampling so AuxK and resampling both run (and their state is checkpointed)
    return TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=5),
                       dead=DeadLatentConfig(dead_after_tokens=1024, resample_every=7),
                       loop=LoopConfig(steps=30, checkpoint_every=10, log_every=5, seed=4))


def test_resume_after_kill_matches_uninterrupted(tmp_path: Path) -> None:
    full = train(_store(), SPECS, _cfg(), out=tmp_path / "full")

    def kill(step: int, run) -> None:
        if step == 17:
            raise Killed

    with pytest.raises(Killed):
        train(_store(), SPECS, _cfg(), out=tmp_path / "cut", callbacks=[kill])
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "step_00000010"
    resumed = train(_store(), SPECS, _cfg(), out=tmp_path / "cut", resume=True)
    assert resumed.steps == 30
    for name in full.dictionaries:
        a, b = weights(full.dictionaries[name]), weights(resumed.dictionaries[name])
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "full" / "metrics.jsonl").read_text().splitlines())


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg.loop.steps = 3
    result = train(_store(), SPECS[0], cfg, out=tmp_path / "new", resume=True)
    assert result.steps == 3 and (tmp_path / "new" / "topk" / "cfg.json").is_file()


def test_export_checkpoint_of_a_stopped_run(tmp_path: Path) -> None:
    def kill(step: int, run) -> None:
        if step == 12:
            raise Killed

    with pytest.raises(Killed):
        train(_store(), SPECS, _cfg(), out=tmp_path, callbacks=[kill], model_name="toy", meta={"data": {"x": 1}})
    from mechscope.training import export_checkpoint

    import json
    import mechscope as ms

    exported = export_checkpoint(tmp_path)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["steps"] == 10 and run["model"] == "toy" and run["data"] == {"x": 1}
    assert sorted(exported) == sorted(s.name for s in SPECS)
    loaded = ms.dictionaries.load(tmp_path / "topk")
    x = sparse_data()[:64]
    torch.testing.assert_close(loaded(x).reconstruction, exported["topk"](x).reconstruction, rtol=1e-4, atol=1e-5)


def test_saved_dictionaries_are_plain_saelens_files_computing_the_same_function(tmp_path: Path) -> None:
    """Training normalises activations; the saved files fold that in, so SAELens reads them without extras."""
    import json

    import mechscope as ms
    from safetensors.torch import load_file

    cfg = _cfg()
    cfg.loop.steps = 5
    result = train(_store(), SPECS, cfg, out=tmp_path)
    x = sparse_data()[:128]
    for name, trained in result.dictionaries.items():
        assert trained.norm_scale_in is not None  # the in-memory result keeps the normalisation buffers
        keys = set(load_file(str(tmp_path / name / "sae_weights.safetensors")))
        assert not keys & {"norm_scale_in", "norm_scale_out", "feature_scale"}, (name, keys)
        assert json.loads((tmp_path / name / "cfg.json").read_text())["normalize_activations"] == "none"
        loaded = ms.dictionaries.load(tmp_path / name)
        torch.testing.assert_close(loaded.encode(x), trained.encode(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(loaded(x).reconstruction, trained(x).reconstruction, rtol=1e-4, atol=1e-4)
