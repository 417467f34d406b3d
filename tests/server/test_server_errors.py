"""Bad data in run folders and meaningless requests answer 4xx JSON, never 500; a token guards non-loopback servers.

A tiny random model stands in for the real one (these checks are about the server, not the model).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mechscope.server import ServeConfig, create_app  # noqa: E402
from tiny import hooked  # noqa: E402

TOKEN = "t0ken-for-the-tests-0123456789"


@pytest.fixture(scope="module")
def model():
    return hooked("llama")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    deep = "[" * 5000 + "]" * 5000
    bad = root / "bad"
    bad.mkdir()
    (bad / "eval.json").write_text(deep)
    (bad / "graph.json").write_text(deep)
    (bad / "metrics.jsonl").write_text('{"step": 1}\n' + "[" * 5000 + "]" * 5000 + "\n")
    (bad / "features.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 40)  # a header, then nothing
    notdb = root / "notdb"
    notdb.mkdir()
    (notdb / "features.db").write_text("hello")
    return root


@pytest.fixture(scope="module")
def client(root, model):
    app = create_app(ServeConfig(runs=str(root)), load_model=lambda: model)
    with TestClient(app) as c:  # raise_server_exceptions: a 500 would fail the test with its traceback
        yield c


def test_damaged_run_files_answer_4xx(client, root):
    r = client.get("/api/runs/bad")
    assert r.status_code == 200 and r.json()["eval"] is None and r.json()["last_metrics"] == {"step": 1}
    r = client.get("/api/runs/bad/graphs/graph.json")
    assert r.status_code == 422 and "nested too deeply" in r.json()["error"]
    for run, word in (("bad", "truncated"), ("notdb", "not an SQLite file")):
        for path in (f"/api/runs/{run}/features", f"/api/runs/{run}/features/1", f"/api/runs/{run}/features?q=x"):
            r = client.get(path)
            assert r.status_code == 409 and word in r.json()["error"] and "features.db" in r.json()["error"], path
            assert str(root) not in r.json()["error"]  # no server-side paths in answers


def test_meaningless_model_requests_answer_422(client):
    same = {"clean": "abc", "corrupted": "abc", "answer": "d", "wrong": "e", "layer_step": 1}
    r = client.post("/api/patch", json=same)
    assert r.status_code == 422 and "same tokens" in r.json()["error"]
    r = client.post("/api/patch", json={**same, "corrupted": "abd", "wrong": "d"})
    assert r.status_code == 422 and "same token" in r.json()["error"]
    r = client.post("/api/patch", json={**same, "corrupted": "abd"})
    assert r.status_code == 200 and len(r.json()["values"]) == 3
    for value in ("NaN", "Infinity", "-Infinity"):
        body = '{"run": "bad", "dictionary": "x", "feature": 0, "prompt": "a", "strength": %s}' % value
        r = client.post("/api/steer", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "strength" in r.json()["error"] and "finite" in r.json()["error"], value


def test_library_errors_map_to_4xx_and_bugs_to_500(root, model, caplog):
    from mechscope.server import app as app_module

    app = create_app(ServeConfig(runs=str(root)), load_model=lambda: model)

    @app.get("/api/test-value-error")
    def value_error() -> dict:
        raise ValueError("k must be positive")

    @app.get("/api/test-recursion")
    def recursion() -> dict:
        return json.loads("[" * 100000 + "]" * 100000)

    @app.get("/api/test-bug")
    def bug() -> dict:
        return {}["missing"]

    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.WARNING):
        r = c.get("/api/test-value-error")
        assert r.status_code == 422 and r.json() == {"error": "k must be positive"}
        r = c.get("/api/test-recursion")
        assert r.status_code == 422 and "nested too deeply" in r.json()["error"]
        r = c.get("/api/test-bug")
        assert r.status_code == 500 and r.json()["error"].startswith("internal error: KeyError")
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "/api/test-bug" in errors[0].getMessage() and errors[0].exc_info
    assert app_module._library_status(KeyError("x")) is None


# ------------------------------------------------------------------------------------------------ token
def test_non_loopback_servers_always_need_a_token():
    cfg = ServeConfig(runs=".", host="0.0.0.0", allow_remote=True)
    assert cfg.token and len(cfg.token) >= 16 and f"?token={cfg.token}" in cfg.url()
    assert ServeConfig(runs=".", host="0.0.0.0", allow_remote=True).token != cfg.token  # random each time
    assert ServeConfig(runs=".").token is None and "token" not in ServeConfig(runs=".").url()
    assert ServeConfig(runs=".", host="10.1.2.3", allow_remote=True, token=TOKEN).token == TOKEN
    for bad in ("", "short", "has space in it 1234567", "x" * 15):
        with pytest.raises(ValueError, match="--token must be at least 16"):
            ServeConfig(runs=".", host="0.0.0.0", allow_remote=True, token=bad)
    with pytest.raises(ValueError, match="--allow-remote"):
        ServeConfig(runs=".", host="0.0.0.0")


def test_every_api_call_needs_the_token(root, model):
    app = create_app(ServeConfig(runs=str(root), host="0.0.0.0", allow_remote=True, token=TOKEN),
                     load_model=lambda: model)
    with TestClient(app) as c:
        for method, path, body in [("GET", "/api/runs", None), ("GET", "/api/info", None),
                                   ("GET", "/api/runs/bad", None), ("GET", "/api/runs/bad/files/eval.json", None),
                                   ("POST", "/api/lens", {"prompt": "ab"}), ("GET", "/api/model", None),
                                   ("GET", "/api/nope", None)]:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"X-Mechscope-Token": "x"}):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 401 and "token" in r.json()["error"], (path, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/runs", headers={"X-Mechscope-Token": TOKEN}).status_code == 200
        assert c.post("/api/lens", json={"prompt": "ab"}, headers={"X-Mechscope-Token": TOKEN}).status_code == 200
        assert c.get(f"/api/runs?token={TOKEN}").status_code == 200
        # the page and static files carry no data; opening the printed address sets the cookie frames use
        assert c.get("/").status_code == 200 and "mechscope_token" not in c.cookies
        assert c.get("/static/util.js").status_code == 200
        page = c.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and c.cookies.get("mechscope_token") == TOKEN
        assert "httponly" in page.headers["set-cookie"].lower() and "samesite=strict" in page.headers["set-cookie"].lower()
        assert c.get("/api/runs/bad/files/eval.json").status_code == 200  # by cookie now
        c.cookies.clear()
        assert c.get("/api/runs").status_code == 401
        assert c.get("/?token=wrong-token-0123456789").status_code == 200 and "mechscope_token" not in c.cookies
