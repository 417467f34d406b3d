"""A run killed mid-way and resumed from its last checkpoint ends with the same weights as an uninterrupted run."""

import json
import logging
import re
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


# ---------------------------------------------------------------------------------------- never mixing runs
def _kill_at(n: int):
    def kill(step: int, run) -> None:
        if step == n:
            raise Killed
    return kill


def test_new_run_into_a_run_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    from mechscope.training import RunFolderError

    cfg = _cfg()
    cfg.loop.steps = 4
    first = train(_store(), SPECS[0], cfg, out=tmp_path / "run")
    first_id = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    with pytest.raises(RunFolderError, match=r"not empty.*--resume.*--overwrite"):
        train(_store(), SPECS[0], cfg, out=tmp_path / "run")
    cfg2 = _cfg()
    cfg2.loop.steps, cfg2.loop.seed = 4, 9
    second = train(_store(), SPECS[0], cfg2, out=tmp_path / "run", overwrite=True)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["run_id"] != first_id and run["config"]["loop"]["seed"] == 9
    assert not torch.equal(first.dictionaries["topk"].W_dec, second.dictionaries["topk"].W_dec)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000004"]
    with pytest.raises(RunFolderError, match="exclude each other"):
        train(_store(), SPECS[0], cfg, out=tmp_path / "run", resume=True, overwrite=True)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="notes.txt"):  # overwrite never deletes what a run did not write
        train(_store(), SPECS[0], cfg, out=tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("change, setting", [
    (lambda specs, cfg, meta: (specs[0].__setattr__("k", 8), None)[1], "specs[0].k"),
    (lambda specs, cfg, meta: cfg.optim.__setattr__("lr", 1e-3), "config.optim.lr"),
    (lambda specs, cfg, meta: cfg.loop.__setattr__("seed", 5), "config.loop.seed"),
    (lambda specs, cfg, meta: specs.append(DictionarySpec("relu", hook="x", d_sae=32, name="extra")), "specs[1]"),
    (lambda specs, cfg, meta: meta["data"].__setitem__("source", "prose"), "meta.data.source"),
])
def test_resume_refuses_other_settings_naming_them(tmp_path: Path, change, setting: str) -> None:
    from mechscope.training import RunFolderError

    meta = {"data": {"source": "stdlib"}}
    with pytest.raises(Killed):
        train(_store(), [SPECS[0]], _cfg(), out=tmp_path, callbacks=[_kill_at(12)], meta=meta)
    specs, cfg = [DictionarySpec("topk", hook="x", d_sae=64, k=4, name="topk")], _cfg()
    change(specs, cfg, meta)
    with pytest.raises(RunFolderError, match=re.escape(setting)) as err:
        train(_store(), specs, cfg, out=tmp_path, resume=True, meta=meta)
    assert "step_00000010" in str(err.value) and "now" in str(err.value)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_00000010"  # nothing was touched


def test_resume_with_more_steps_says_what_it_overrides(tmp_path: Path, caplog) -> None:
    with pytest.raises(Killed):
        train(_store(), SPECS[0], _cfg(), out=tmp_path, callbacks=[_kill_at(12)])
    cfg = _cfg()
    cfg.loop.steps = 40
    with caplog.at_level(logging.WARNING, logger="mechscope.training.loop"):
        result = train(_store(), SPECS[0], cfg, out=tmp_path, resume=True)
    assert result.steps == 40
    assert any("config.loop.steps = 40" in r.getMessage() and "30" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "run.json").read_text())["resume_overrides"] == {"config.loop.steps": [30, 40]}
    cfg.loop.steps = 20  # fewer steps than the checkpoint already has
    with pytest.raises(ValueError, match="step 40, beyond loop.steps=20"):
        train(_store(), SPECS[0], cfg, out=tmp_path, resume=True)


def test_checkpoints_of_another_run_are_never_pruned(tmp_path: Path) -> None:
    from mechscope.training.checkpoint import list_checkpoints, save_checkpoint

    t = {"w": torch.zeros(2)}
    save_checkpoint(tmp_path, 1000, t, {"run_id": "old"}, keep=2)
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, t, {"run_id": "new"}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000020", "step_00000030", "step_00001000"]


def test_resume_falls_back_to_the_last_valid_checkpoint(tmp_path: Path, caplog) -> None:
    full = train(_store(), SPECS, _cfg(), out=tmp_path / "full")
    with pytest.raises(Killed):
        train(_store(), SPECS, _cfg(), out=tmp_path / "cut", callbacks=[_kill_at(25)])
    newest = tmp_path / "cut" / "checkpoints" / "step_00000020" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING):
        resumed = train(_store(), SPECS, _cfg(), out=tmp_path / "cut", resume=True)
    assert any(str(newest) in r.getMessage() for r in caplog.records)
    for name in full.dictionaries:
        a, b = weights(full.dictionaries[name]), weights(resumed.dictionaries[name])
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "cut" / "checkpoints" / "invalid-step_00000020").is_dir()  # kept aside, never used again
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "flip_byte"])
def test_resume_without_a_valid_checkpoint_names_every_file(tmp_path: Path, damage: str) -> None:
    from mechscope.training import CheckpointError

    with pytest.raises(Killed):
        train(_store(), SPECS[0], _cfg(), out=tmp_path, callbacks=[_kill_at(25)])
    files = []
    for ckpt in ("step_00000010", "step_00000020"):
        st, js = tmp_path / "checkpoints" / ckpt / "state.safetensors", tmp_path / "checkpoints" / ckpt / "state.json"
        if damage == "truncate":
            st.write_bytes(st.read_bytes()[:100])
            files.append(st)
        elif damage == "garbage_json":
            js.write_text('{"step": 1')
            files.append(js)
        else:
            data = bytearray(st.read_bytes())
            data[-5] ^= 0xFF  # same size, one byte different: only the checksum sees it
            st.write_bytes(bytes(data))
            files.append(st)
    with pytest.raises(CheckpointError) as err:
        train(_store(), SPECS[0], _cfg(), out=tmp_path, resume=True)
    for f in files:
        assert str(f) in str(err.value)


def test_non_finite_settings_are_refused_before_training(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg.optim.lr = float("inf")
    with pytest.raises(ValueError, match=r"TrainConfig\.optim\.lr must be a finite number, got inf"):
        train(_store(), SPECS[0], cfg, out=tmp_path / "a")
    with pytest.raises(ValueError, match=r"DictionarySpec\.lr must be a finite number"):  # refused when built
        DictionarySpec("relu", hook="x", d_sae=32, lr=float("inf"))
    spec = DictionarySpec("relu", hook="x", d_sae=32)
    spec.lr = float("inf")  # changed after construction: train() still refuses it
    with pytest.raises(ValueError, match=r"DictionarySpec\[0\]\.lr must be a finite number"):
        train(_store(), spec, _cfg(), out=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
