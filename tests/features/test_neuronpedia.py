"""Neuronpedia export against fixture files built from its public schema (tests/features/fixtures)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

import mechscope as ms
from mechscope.features import FeatureDB, StatsConfig, build_database, feature_stats
from mechscope.features.neuronpedia import (NeuronpediaSource, export_features, feature_details, neuronpedia_graph,
                                            write_graph)
from tiny import hooked

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "neuronpedia_schema.json").read_text())
TEXTS = ["def f(x): return x + 1", "import os, sys", "class A:\n    pass", "print('hello world')"]


def check_value(kind: str, value, where: str) -> None:
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        assert nullable, f"{where} is null but {kind} is not nullable"
        return
    if kind.endswith("[]"):
        assert isinstance(value, list), f"{where} should be a list"
        for i, v in enumerate(value):
            check_value(kind[:-2], v, f"{where}[{i}]")
        return
    ok = {"string": lambda v: isinstance(v, str), "enum": lambda v: isinstance(v, str),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool), "json": lambda v: True,
          "datetime": lambda v: isinstance(v, str) and datetime.fromisoformat(v) is not None}[kind]
    assert ok(value), f"{where}: {value!r} is not {kind}"


def check_rows(table: str, rows: list[dict]) -> None:
    spec = SCHEMA["tables"][table]
    assert rows, f"no {table} rows"
    for i, row in enumerate(rows):
        unknown = set(row) - set(spec["columns"])
        assert not unknown, f"{table} row {i}: columns {sorted(unknown)} are not in Neuronpedia's table"
        missing = set(spec["required"]) - {k for k, v in row.items() if v is not None}
        assert not missing, f"{table} row {i}: required columns {sorted(missing)} missing"
        for k, v in row.items():
            check_value(spec["columns"][k], v, f"{table}[{i}].{k}")


def read_rows(path: Path) -> list[dict]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = hooked("llama")
    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    stats = feature_stats(model, sae, TEXTS, StatsConfig(top_k=3), batch_size=4)
    path = build_database(tmp_path_factory.mktemp("np") / "f.db", stats, model, sae)
    return model, sae, path


def test_feature_export_matches_the_import_tables(built, tmp_path):
    _, sae, db_path = built
    src = NeuronpediaSource("tiny-llama", "mechscope-res-8", 1, hook_name="blocks.1.hook_resid_post",
                            dataset="stdlib", num_tokens_in_prompt=16)
    with FeatureDB(db_path) as db:
        live = [f for f, _ in db.by_density(1e-9, 1.0)]
        db.set_explanation(live[0], "python keywords", {"detection": 0.75, "explainer_model": "local"})
        folder = export_features(db, tmp_path, src, dictionary=sae, batch_size=3)
        cards = {f: db.card(f) for f in range(db.d_sae)}
    assert folder == tmp_path / "tiny-llama" / "1-mechscope-res-8"
    for name, table in [("release.jsonl", "SourceRelease"), ("model.jsonl", "Model"),
                        ("sourceset.jsonl", "SourceSet"), ("source.jsonl", "Source")]:
        check_rows(table, read_rows(folder / name))
    feats = [r for p in sorted((folder / "features").glob("batch-*.jsonl.gz")) for r in read_rows(p)]
    acts = [r for p in sorted((folder / "activations").glob("batch-*.jsonl.gz")) for r in read_rows(p)]
    expl = [r for p in sorted((folder / "explanations").glob("batch-*.jsonl.gz")) for r in read_rows(p)]
    assert len(list((folder / "features").glob("*.gz"))) == 3  # 8 features in batches of 3
    check_rows("Neuron", feats)
    check_rows("Activation", acts)
    check_rows("Explanation", expl)
    by_index = {r["index"]: r for r in feats}
    assert sorted(by_index, key=int) == [str(i) for i in range(8)]
    f0 = by_index[str(live[0])]
    card = cards[live[0]]
    assert f0["layer"] == "1-mechscope-res-8" and f0["maxActApprox"] == pytest.approx(card.max_act, rel=1e-5)
    assert f0["frac_nonzero"] == pytest.approx(card.frequency, rel=1e-5)
    assert f0["pos_str"] == [t.token for t in card.promoted] and f0["neg_str"] == [t.token for t in card.suppressed]
    assert f0["freq_hist_data_bar_heights"] == [float(h) for h in card.hist]
    assert f0["hasVector"] and len(f0["vector"]) == 32 and f0["hookName"] == "blocks.1.hook_resid_post"
    top = [a for a in acts if a["index"] == str(live[0]) and a["binMin"] is None]
    assert len(top) == len(card.top_examples)
    assert top[0]["values"][top[0]["maxValueTokenIndex"]] == pytest.approx(card.top_examples[0].activation, rel=1e-3)
    assert [e["description"] for e in expl] == ["python keywords"] and expl[0]["scoreV2"] == 0.75


def test_graph_export_matches_the_viewer_schema(built, tmp_path):
    from circuits.helpers import random_transcoders

    from mechscope.circuits import AttributionConfig, attribute

    model, _, db_path = built
    graph = attribute(model, random_transcoders(model), "hello there", cfg=AttributionConfig(batch_size=64))
    data = graph.to_json(slug="t", prompt="hello there")
    out = neuronpedia_graph(data, scan="tiny-llama", source_set="mechscope-transcoder-48", description="test")
    jsonschema.validate(out, SCHEMA["graph"])
    assert out["metadata"]["scan"] == "tiny-llama" and out["metadata"]["info"]["generator"]["name"] == "mechscope"
    assert out["metadata"]["feature_details"] == {"neuronpedia_source_set": "mechscope-transcoder-48"}
    assert out["metadata"]["replacement_score"] == data["metadata"]["replacement_score"]
    assert [n["node_id"] for n in out["nodes"]] == [n["node_id"] for n in data["nodes"]]
    assert out["links"] == data["links"] and data["metadata"].get("info") is None  # the input is not modified
    path = write_graph(data, tmp_path / "g.json", scan="tiny-llama", feature_json_base_url="https://x.org/f/")
    jsonschema.validate(json.loads(path.read_text()), SCHEMA["graph"])
    with pytest.raises(ValueError, match="no nodes"):
        neuronpedia_graph({"metadata": {}, "nodes": [], "links": []}, scan="x")


def test_feature_details_files(built):
    _, _, db_path = built
    with FeatureDB(db_path) as db:
        f = db.by_density(1e-9, 1.0)[0][0]
        card = db.card(f)
    details = feature_details(card)
    jsonschema.validate(details, SCHEMA["feature_details"])
    assert details["index"] == f and details["top_logits"] == [t.token for t in card.promoted]
    assert details["examples_quantiles"][0]["examples"][0]["tokens_acts_list"][card.top_examples[0].position] == \
        pytest.approx(card.top_examples[0].activation, rel=1e-3)


def test_source_ids_are_validated():
    with pytest.raises(ValueError, match="source_set"):
        NeuronpediaSource("m", "has space", 0)
    with pytest.raises(ValueError, match="layer"):
        NeuronpediaSource("m", "s", -1)
