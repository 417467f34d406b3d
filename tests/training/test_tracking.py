"""Experiment tracking: TensorBoard event files and W&B offline runs carry what metrics.jsonl records."""

from __future__ import annotations

import json

import pytest
import torch

from mechscope.activations.store import ActivationStore, StoreConfig
from mechscope.training import DictionarySpec, LoopConfig, TrainConfig, train
from mechscope.training.tracking import TensorBoardTracker, Tracker, read_metrics, replay


def tiny_run(tmp_path, callbacks):
    torch.manual_seed(0)
    store = ActivationStore.from_tensors({"blocks.0.resid_post": torch.randn(4096, 16)},
                                         StoreConfig(batch_size=256, buffer_rows=1024))
    cfg = TrainConfig(loop=LoopConfig(steps=6, log_every=2))
    return train(store, DictionarySpec("topk", hook="blocks.0.resid_post", expansion=2, k=4), cfg,
                 out=tmp_path / "run", callbacks=callbacks)


class Recorder(Tracker):
    def __init__(self):
        super().__init__()
        self.logged, self.config = {}, None

    def log_config(self, config):
        self.config = config

    def log_metrics(self, metrics, step):
        self.logged[step] = dict(metrics)


def test_a_tracker_sees_exactly_what_metrics_jsonl_records(tmp_path):
    rec = Recorder()
    tiny_run(tmp_path, [rec])
    assert rec.closed and rec.config["specs"][0]["arch"] == "topk"
    assert rec.logged == read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert sorted(rec.logged) == [2, 4, 6] and any(k.endswith("/fvu") for k in rec.logged[6])


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install 'mechscope[tracking]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardTracker(tmp_path / "tb") as tb:
        tiny_run(tmp_path, [tb])
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    truth = read_metrics(tmp_path / "run" / "metrics.jsonl")
    tag = next(k for k in truth[6] if k.endswith("/fvu"))
    events = acc.Scalars(tag)
    assert [e.step for e in events] == [2, 4, 6]
    assert [e.value for e in events] == pytest.approx([truth[s][tag] for s in (2, 4, 6)], rel=1e-6)
    # replaying metrics.jsonl into a fresh log gives the same scalars
    assert replay(tmp_path / "run" / "metrics.jsonl", TensorBoardTracker(tmp_path / "tb2")) == 3
    acc2 = EventAccumulator(str(tmp_path / "tb2"))
    acc2.Reload()
    assert [e.value for e in acc2.Scalars(tag)] == pytest.approx([e.value for e in events], rel=1e-6)


def wandb_history(path) -> dict[int, dict[str, float]]:
    """History rows of an offline ``.wandb`` file: a LevelDB-style log (7-byte header, 32 KiB blocks, records
    split FULL/FIRST/MIDDLE/LAST) of protobuf ``Record`` messages, as ``wandb sync`` reads it."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf, rows = path.read_bytes(), 7, 32768, b"", {}
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        buf, pos = buf + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                rows[int(items.pop("_step"))] = items
    return rows


def test_wandb_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install 'mechscope[tracking]'")
    from mechscope.training.tracking import WandbTracker

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    with WandbTracker(project="mechscope-test", mode="offline", dir=tmp_path / "wb") as wb:
        tiny_run(tmp_path, [wb])
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1, "one offline run file, for `wandb sync`"
    history = wandb_history(runs[0])
    truth = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert sorted(history) == [2, 4, 6]
    for step, metrics in truth.items():
        assert {k: history[step][k] for k in metrics} == pytest.approx(metrics, rel=1e-6)


def test_read_metrics_names_the_bad_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "dictionary": "a", "loss": 1.0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(p)


def test_mechscope_train_logs_to_tensorboard_and_wandb_offline(tmp_path, monkeypatch):
    """``mechscope train --tensorboard --wandb offline``: both dashboards hold what metrics.jsonl records, and their
    folders inside --out do not make the run folder count as taken."""
    pytest.importorskip("tensorboard", reason="pip install 'mechscope[tracking]'")
    pytest.importorskip("wandb", reason="pip install 'mechscope[tracking]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tiny import save_model_dir

    from mechscope.cli.main import main

    monkeypatch.setenv("WANDB_SILENT", "true")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"def f{i}(x):\n    return x * {i}\n"}) for i in range(200)))
    run = tmp_path / "run"
    argv = ["train", "--model", str(save_model_dir(tmp_path / "model")), "--hook", "blocks.1.resid_post",
            "--arch", "topk", "--k", "4", "--expansion", "2", "--source", str(corpus), "--context-size", "16",
            "--batch-size", "64", "--buffer-rows", "256", "--model-batch", "4", "--steps", "4", "--log-every", "2",
            "--eval-contexts", "0", "--tensorboard", "--wandb", "offline", "--out", str(run)]
    assert main(argv) == 0
    truth = read_metrics(run / "metrics.jsonl")
    tag = next(k for k in truth[4] if k.endswith("/fvu"))
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars(tag)] == [(s, pytest.approx(truth[s][tag], rel=1e-6))
                                                             for s in (2, 4)]
    (wandb_file,) = (run / "wandb").glob("offline-run-*/*.wandb")
    history = wandb_history(wandb_file)
    assert sorted(history) == [2, 4] and history[4][tag] == pytest.approx(truth[4][tag], rel=1e-6)
    # --overwrite replaces the run and its dashboards (no stale event files mixed into the new run's)
    assert main(argv + ["--overwrite"]) == 0
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
