"""Attribution on demand through the cached transcoder set: found, used, and clear errors without one."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mechscope.server import ServeConfig, create_app  # noqa: E402
from mechscope.sets import SetConfig, build_transcoder_set  # noqa: E402
from mechscope.sets.store import MANIFEST, set_dir  # noqa: E402
from tiny import hooked  # noqa: E402


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    model = hooked("llama")
    mp = pytest.MonkeyPatch()
    mp.setenv("MECHSCOPE_HOME", str(home))
    build_transcoder_set(SetConfig(model=model.cfg.name, source="code", tokens=1024, expansion=2, k=4,
                                   batch_size=256, buffer_rows=512, context_size=32, eval_contexts=2), model=model)
    yield home, model
    mp.undo()


def _client(tmp_path, model):
    (tmp_path / "runs").mkdir(exist_ok=True)
    return TestClient(create_app(ServeConfig(runs=str(tmp_path / "runs")), load_model=lambda: model))


def test_attribute_through_the_cached_set(tiny_home, tmp_path, monkeypatch):
    home, model = tiny_home
    monkeypatch.setenv("MECHSCOPE_HOME", str(home))
    with _client(tmp_path, model) as c:
        info = c.get("/api/transcoder-set")
        assert info.status_code == 200 and info.json()["n_layers"] == model.cfg.n_layers
        r = c.post("/api/attribute", json={"prompt": "hello world", "max_feature_nodes": 64})
        assert r.status_code == 200, r.text
        meta = r.json()["metadata"]
        assert 0.0 <= meta["replacement_score"] <= 1.0 and 0.0 <= meta["completeness_score"] <= 1.0
        layers = {n.get("layer") for n in r.json()["nodes"] if n.get("feature_type") == "cross layer transcoder"}
        assert layers, "the graph should hold transcoder feature nodes"
        bad = c.post("/api/attribute", json={"prompt": "", "max_feature_nodes": 64})
        assert bad.status_code == 422


def test_no_set_and_corrupt_set_give_clear_errors(tiny_home, tmp_path, monkeypatch):
    home, model = tiny_home
    monkeypatch.setenv("MECHSCOPE_HOME", str(tmp_path / "empty"))
    with _client(tmp_path, model) as c:
        r = c.post("/api/attribute", json={"prompt": "hello", "max_feature_nodes": 64})
        assert r.status_code == 404 and "mechscope dictionaries build" in r.text
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    manifest = set_dir(model.cfg.name, copy) / MANIFEST
    data = json.loads(manifest.read_text())
    data["model"] = "another-model"
    manifest.write_text(json.dumps(data))
    monkeypatch.setenv("MECHSCOPE_HOME", str(copy))
    with _client(tmp_path, model) as c:
        r = c.get("/api/transcoder-set")
        assert r.status_code == 409 and "another-model" in r.text
