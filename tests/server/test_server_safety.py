"""Hostile and broken requests get a 4xx with a clear JSON message, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mechscope.server import ServeConfig, create_app  # noqa: E402

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def client(runs_root, smollm):
    app = create_app(ServeConfig(runs=str(runs_root), max_prompt_tokens=16, max_body_bytes=4096),
                     load_model=lambda: smollm)
    with TestClient(app) as c:
        yield c


def still_serving(client):
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs/demo/features/0").status_code == 200


@pytest.mark.parametrize("path", [
    "/api/runs/demo/files/%2e%2e/%2e%2e/etc/passwd",
    "/api/runs/demo/files/sae/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "/api/runs/demo/files/%2Fetc%2Fpasswd",
    "/api/runs/demo/files//etc/passwd",
    "/api/runs/demo/files/..%5C..%5Cetc%5Cpasswd",
    "/api/runs/demo/files/C:%5Cwindows%5Cwin.ini",
    "/api/runs/demo/files/sae/%00cfg.json",
    "/api/runs/evil/files/escape.json",
    "/api/runs/evil/files/up/eval.json",
    "/api/runs/evil/files/.hidden.json",
    "/api/runs/demo/graphs/%2e%2e/evil/graph.json",
    "/api/runs/%2e%2e/files/etc/passwd",
    "/api/runs/demo/files/sae/sae_weights.safetensors",
    "/api/runs/demo/files/sae/features.db",
    "/api/runs/demo/files/nothing-here.json",
])
def test_paths_outside_or_unservable_are_refused(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    body = r.json()
    assert body["error"] and "secret" not in r.text and "root:" not in r.text
    still_serving(client)


def test_raw_dotdot_is_refused_too(client):
    # Send '..' unnormalised (httpx would collapse it): build the request by hand.
    req = client.build_request("GET", "http://testserver/api/runs/demo/files/x")
    req.url = req.url.copy_with(raw_path=b"/api/runs/demo/files/../../../../etc/passwd")
    r = client.send(req)
    assert 400 <= r.status_code < 500 and "root:" not in r.text


def test_unknown_run_and_feature(client):
    r = client.get("/api/runs/nope")
    assert r.status_code == 404 and "unknown run 'nope'" in r.json()["error"] and "demo" in r.json()["error"]
    r = client.get("/api/runs/demo/features/100000")
    assert r.status_code == 404 and "out of range" in r.json()["error"] and "0..63" in r.json()["error"]
    r = client.get("/api/runs/demo/features/abc")
    assert r.status_code == 422 and "feature" in r.json()["error"]
    r = client.get("/api/runs/demo/features/-1")
    assert r.status_code == 422 and "feature" in r.json()["error"] and "greater than or equal to 0" in r.json()["error"]
    r = client.get("/api/runs/evil/features")
    assert r.status_code == 404 and "no feature database" in r.json()["error"]
    r = client.get("/api/no/such/endpoint")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
    still_serving(client)


def test_oversized_prompt_and_body(client):
    long = "word " * 500  # 2500 characters: over the schema's bound
    r = client.post("/api/lens", json={"prompt": long})
    assert r.status_code == 422 and "at most 2000 characters" in r.json()["error"]
    r = client.post("/api/lens", json={"prompt": "token " * 100})  # under 2000 chars, over 16 tokens
    assert r.status_code == 413 and "at most 16" in r.json()["error"]
    r = client.post("/api/lens", content=b'{"prompt": "' + b"a" * 5000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 4096 bytes" in r.json()["error"]
    r = client.get("/api/runs/demo/features", params={"q": "x" * 500})
    assert r.status_code == 422 and "at most 200 characters" in r.json()["error"]
    still_serving(client)


def test_malformed_and_invalid_bodies(client):
    for body in (b'{"prompt": ', b"not json", b"[1, 2", b"\xff\xfe"):
        r = client.post("/api/lens", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"].startswith(("malformed JSON", "invalid request")), body
    cases = [
        ({"prompt": "hi", "extra": 1}, "extra"),
        ({"prompt": ""}, "prompt"),
        ({}, "prompt"),
        ({"prompt": 5}, "prompt"),
    ]
    for body, word in cases:
        r = client.post("/api/lens", json=body)
        assert r.status_code == 422 and word in r.json()["error"], (body, r.text)
    r = client.post("/api/steer", json={"run": "demo", "dictionary": "sae", "feature": 1, "strength": 1e9,
                                        "prompt": "hi"})
    assert r.status_code == 422 and "strength" in r.json()["error"]
    still_serving(client)


def test_steering_inputs_are_checked(client):
    base = {"run": "demo", "dictionary": "sae", "feature": 1, "strength": 2.0, "prompt": "hi", "max_new_tokens": 2}
    for change, status, word in [({"dictionary": "../demo/sae"}, 400, ".."), ({"dictionary": "/etc"}, 400, "relative"),
                                 ({"dictionary": "."}, 404, "not a dictionary"), ({"run": "nope"}, 404, "unknown run"),
                                 ({"feature": 64}, 404, "out of range"), ({"run": "../x"}, 422, "run"),
                                 ({"max_new_tokens": 1000}, 422, "max_new_tokens")]:
        r = client.post("/api/steer", json={**base, **change})
        assert r.status_code == status and word in r.json()["error"], (change, r.status_code, r.text)
    r = client.post("/api/patch", json={"clean": "Mary gave it to", "corrupted": "John and Bob gave it to",
                                        "answer": " John", "wrong": " Mary"})
    assert r.status_code == 422 and "same number of tokens" in r.json()["error"]
    r = client.post("/api/patch", json={"clean": "Mary gave it to", "corrupted": "John gave it to",
                                        "answer": " Johnathan Smith", "wrong": " Mary"})
    assert r.status_code == 422 and "not a single token" in r.json()["error"]
    still_serving(client)


def test_error_bodies_are_json(client):
    r = client.get("/api/runs/demo/files/%2e%2e/x")
    assert r.headers["content-type"].startswith("application/json")
    json.loads(r.text)
