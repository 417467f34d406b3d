"""JSON API over a real run folder: run browser, features, graphs, files, model endpoints, offline docs."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mechscope.server import ServeConfig, create_app  # noqa: E402

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def client(runs_root, smollm):
    app = create_app(ServeConfig(runs=str(runs_root), max_prompt_tokens=32), load_model=lambda: smollm)
    with TestClient(app) as c:
        yield c


def test_runs_are_listed_and_described(client):
    names = [r["name"] for r in client.get("/api/runs").json()]
    assert names == ["demo", "evil"]
    d = client.get("/api/runs/demo").json()
    assert d["dictionaries"][0]["path"] == "sae"
    assert d["dictionaries"][0]["d_sae"] == 64 and d["dictionaries"][0]["architecture"] == "topk"
    assert d["feature_dbs"] == ["sae/features.db"]
    assert d["graphs"] == ["graph.json"] and d["reports"] == ["report.html"]
    assert len(d["dashboards"]) >= 1
    assert d["eval"]["explained_variance"] == 0.81 and d["last_metrics"]["step"] == 4
    assert "1 dictionaries" in d["summary"]


def test_symlinks_and_hidden_files_are_not_listed(client):
    d = client.get("/api/runs/evil").json()
    assert d["graphs"] == ["graph.json"] and d["dictionaries"] == [] and d["evals"] == []


def test_feature_search_and_card(client):
    res = client.get("/api/runs/demo/features", params={"q": "capital"}).json()
    assert res["db"] == "sae/features.db" and res["total"] == 64
    assert res["hits"] and all("capital" in h["label"] for h in res["hits"])
    f = res["hits"][0]["feature"]
    card = client.get(f"/api/runs/demo/features/{f}").json()
    assert card["feature"] == f and card["card"]["top_examples"]
    assert card["card"]["promoted"] and card["card"]["frequency"] > 0
    assert client.get("/api/runs/demo/features", params={"q": "#5"}).json()["hits"][0]["feature"] == 5
    top = client.get("/api/runs/demo/features", params={"q": "", "limit": 3}).json()["hits"]
    assert len(top) == 3 and top[0]["frequency"] >= top[-1]["frequency"]


def test_fts_syntax_in_queries_is_harmless(client):
    """FTS5 operators and quotes in a query are taken as plain words (each quoted), never as syntax."""
    def search(q):
        return client.get("/api/runs/demo/features", params={"q": q})

    plain = search("capital").json()["hits"]
    assert plain
    assert search("capital)").json()["hits"] == plain          # the stray bracket is ignored, not an error
    assert search('"capital').json()["hits"] == plain          # so is an unbalanced quote
    assert search("capital OR zzzqqq").json()["hits"] == []     # OR is a word to find (ANDed), not an operator
    r = search("a AND OR NOT (")
    assert r.status_code == 200 and isinstance(r.json()["hits"], list)
    for q in ("*", "()", '"'):
        r = search(q)
        assert r.status_code == 422 and "no words" in r.json()["error"], q


def test_dashboard_is_linked_and_served_sandboxed(client):
    card = client.get("/api/runs/demo/features/1").json()
    assert card["dashboard"].endswith("_1.html")
    r = client.get(f"/api/runs/demo/files/{card['dashboard']}")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["content-security-policy"].startswith("sandbox")


def test_graph_and_node_cards(client):
    g = client.get("/api/runs/demo/graphs/graph.json").json()
    assert {n["feature_type"] for n in g["nodes"]} >= {"embedding", "logit", "cross layer transcoder"}
    feat = next(n for n in g["nodes"] if n["feature_type"] == "cross layer transcoder")
    r = client.get("/api/runs/demo/node-card", params={"node_id": feat["node_id"]}).json()
    assert r["layer"] == 6 and r["card"]["feature"] == int(feat["node_id"].split("_")[1])
    tok = client.get("/api/runs/demo/node-card", params={"node_id": "E_0_0"}).json()
    assert tok["card"] is None and "not a feature node" in tok["message"]
    bad = client.get("/api/runs/evil/graphs/graph.json")
    assert bad.status_code == 422 and "must be lists" in bad.json()["error"]


def test_offline_docs_and_openapi(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/runs", "/api/runs/{run}/features/{feature}", "/api/steer", "/api/lens", "/api/patch"):
        assert path in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower() and "http" not in page.text
    index = client.get("/")
    assert index.status_code == 200 and "https://" not in index.text
    assert client.get("/static/app.js").status_code == 200


def test_steering_lens_and_patching(client):
    r = client.post("/api/steer", json={"run": "demo", "dictionary": "sae", "feature": 3, "strength": 5.0,
                                        "prompt": "The cat", "max_new_tokens": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["hook_name"] == "blocks.6.resid_post" and out["baseline"] and out["steered"]
    assert out["max_activation"] > 0  # the scale comes from the run's feature database
    r = client.post("/api/lens", json={"prompt": "The capital of France is"})
    hm = r.json()
    assert r.status_code == 200 and hm["row_labels"][-1] == "final" and len(hm["values"]) == 31
    assert len(hm["col_labels"]) == len(hm["values"][0]) == len(hm["cell_text"][0])
    r = client.post("/api/patch", json={"clean": "Mary gave it to", "corrupted": "John gave it to",
                                        "answer": " John", "wrong": " Mary", "layer_step": 8})
    assert r.status_code == 200, r.text
    hm = r.json()
    assert hm["row_labels"] == ["L0", "L8", "L16", "L24"] and len(hm["values"][0]) == len(hm["col_labels"])
    assert client.get("/api/model").json()["loaded"] is True
