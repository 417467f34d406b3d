"""``_repr_html_`` of every result object a user gets back, on tiny random models: each renders, is
self-contained, carries the numbers it shows, and its empty case gives an explicit empty view."""

from __future__ import annotations

import pytest
import torch

import mechscope as ms
from mechscope.evals.downstream import Downstream
from mechscope.evals.metrics import Reconstruction
from mechscope.evals.report import DictionaryEval, EvalReport
from mechscope.features import FeatureDB, StatsConfig, build_database, feature_stats
from mechscope.features.monitor import FeatureMonitor, MonitorResult
from mechscope.features.steering import SteeringResult, feature_vector, steer
from mechscope.heads import head_scores
from mechscope.heads.detectors import HeadScores
from mechscope.interventions import logit_diff, patch_resid
from mechscope.interventions.results import PatchResult
from mechscope.lens import direct_logit_attribution, logit_lens
from mechscope.lens.tuned import LensComparison
from mechscope.probes.linear import ProbeResult, probe_layers
from tiny import hooked

from .helpers import check_self_contained, has_number, kinds, spec_of

TEXTS = ["def f(x): return x + 1", "import os, sys", "class A:\n    pass", "print('hello world')"]


@pytest.fixture(scope="module")
def llama():
    return hooked("llama")


def rendered(obj) -> dict:
    html = obj._repr_html_()
    check_self_contained(html)
    return spec_of(html)


def assert_empty(obj) -> None:
    spec = rendered(obj)
    assert spec["kind"] == "empty" and spec["reason"], spec


def test_patch_result(llama):
    res = patch_resid(llama, "abcdef", "abcxef", logit_diff(ord("g"), ord("h")), layers=[0, 1])
    spec = rendered(res)
    assert kinds(spec) == ["panel", "heatmap"]
    hm = spec["children"][0]
    norm = res.normalized()
    assert hm["row_labels"] == res.row_labels and has_number(hm, float(norm[1, 3]), rel=1e-4)
    assert has_number(spec, res.clean, rel=1e-4)
    raw = PatchResult(torch.tensor([[1.5]]), ["L0"], ["p0"], "metric")  # no baselines: raw values
    assert rendered(raw)["children"][0]["values"] == [[1.5]]
    assert_empty(PatchResult(torch.zeros(0, 0), [], [], "metric"))


def test_lens_and_dla(llama):
    lens = logit_lens(llama, "abcdef")
    spec = rendered(lens)
    assert kinds(spec) == ["panel", "heatmap", "lines"]
    top = lens.logits[-1, 0, -1].float().softmax(-1).max()
    assert has_number(spec["children"][0], float(top), rel=1e-4)
    assert has_number(spec["children"][1], float(lens.mean_kl()[0]), rel=1e-4)
    dla = direct_logit_attribution(llama, "abcdef", ord("g"), ord("h"))
    spec = rendered(dla)
    assert kinds(spec) == ["panel", "bars", "panel", "heatmap"]
    label, value = dla.top(1)[0]
    assert spec["children"][0]["labels"][0] == label and has_number(spec["children"][0], value, rel=1e-4)
    assert has_number(spec, float(dla.total.mean()), rel=1e-4)
    empty_lens = logit_lens(llama, "abcdef")
    empty_lens.logits = empty_lens.logits[:, :, :0]
    assert_empty(empty_lens)
    assert_empty(type(dla)(torch.zeros(0, 1), [], torch.zeros(1), torch.zeros(1), 2, 4))


def test_head_scores_and_probe(llama):
    hs = head_scores(llama, n=2, seq_len=6)
    spec = rendered(hs)
    assert kinds(spec)[:2] == ["panel", "table"] and "heatmap" in kinds(spec)
    head, score = hs.top("induction", 1)[0]
    assert has_number(spec["children"][0], score, rel=1e-4) and head in str(spec["children"][0]["rows"])
    assert_empty(HeadScores({}))
    labels = torch.full((4, 8), -1)
    labels[:, 3] = torch.tensor([0, 1, 0, 1])
    labels[:, 5] = torch.tensor([1, 0, 1, 0])
    texts = ["abcdefgh", "bcdefghi", "cdefghij", "defghijk"]
    probe = probe_layers(llama, texts, labels, layers=[0, 1])
    spec = rendered(probe)
    lines = spec["children"][0]
    assert lines["x_labels"] == ["L0", "L1"] and has_number(lines, float(probe.test[1]), rel=1e-4)
    assert_empty(ProbeResult([], torch.zeros(0), torch.zeros(0), None, 0.5, "accuracy", "resid_post"))
    comp = LensComparison(["L0", "final"], torch.tensor([2.5, 0.0]), torch.tensor([1.25, 0.0]))
    assert has_number(rendered(comp), 1.25)
    assert_empty(LensComparison([], torch.zeros(0), torch.zeros(0)))


def test_cache_summary_and_attention_viewer(llama):
    _, cache = llama.run_with_cache(["abcdef", "abc"], names=["blocks.1.attn.pattern", "blocks.0.resid_post"])
    spec = rendered(cache)
    rows = spec["children"][0]["rows"]
    assert [r[0] for r in rows] == list(cache) and rows[1][1] == " × ".join(map(str, cache["blocks.1.attn.pattern"].shape))
    att = cache.attention(1, prompt=1)  # the padded prompt: only its 3 real positions
    spec = rendered(att)
    assert spec["kind"] == "attention" and spec["tokens"] == ["a", "b", "c"] and len(spec["heads"]) == 4
    assert has_number(spec, float(cache["blocks.1.attn.pattern"][1, 2, 2, 1]), rel=1e-4)
    with pytest.raises(IndexError, match="holds 2 prompts"):
        cache.attention(1, prompt=5)
    from mechscope.activations import ActivationCache

    assert_empty(ActivationCache({}, llama, cache.tokens))


def test_feature_card_steering_and_monitor(llama, tmp_path):
    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    stats = feature_stats(llama, sae, TEXTS, StatsConfig(top_k=3), batch_size=4)
    with FeatureDB(build_database(tmp_path / "f.db", stats, llama, sae)) as db:
        f = db.by_density(1e-9, 1.0)[0][0]
        card = db.card(f)
    spec = rendered(card)
    assert spec["kind"] == "card" and spec["card"]["feature"] == f and has_number(spec, card.max_act, rel=1e-4)
    assert spec["card"]["promoted"][0]["token"] == card.promoted[0].token
    out = steer(llama, "abc", [feature_vector(sae, f, 10.0, stats=stats)], targets=[ord("d")], watch=(sae, f),
                max_new_tokens=3)
    spec = rendered(out)
    assert has_number(spec, out.steered_probs[0], rel=1e-4) and has_number(spec, out.baseline_probs[0], rel=1e-4)
    assert out.steered_text in spec["children"][1]["text"]
    assert_empty(SteeringResult("abc", []))
    mon = FeatureMonitor(llama, sae, {f: 1e-3, (f + 1) % 8: 1e6})
    report = mon.scan(TEXTS[:1])[0]
    spec = rendered(report)
    rows = spec["children"][0]["rows"]
    assert {r[0] for r in rows} == set(report.scores) and has_number(spec, max(report.scores.values()), rel=1e-4)
    assert_empty(MonitorResult("text", ["t"]))


def test_eval_report():
    rec = Reconstruction(rows=100, l0=12.5, mse=0.5, fvu=0.125, cosine=0.9, shrinkage=0.95, dead_fraction=0.25,
                         dense_fraction=0.0, density_histogram={"bin_edges_log10": [-3.0, -2.0, -1.0],
                                                                "counts": [3, 5], "never_fired": [2]})
    report = EvalReport(model="tiny")
    d = ms.dictionaries.create("topk", d_in=8, d_sae=16, k=2, hook_name="blocks.0.resid_post")
    report.add("sae", d, DictionaryEval(rec, Downstream(tokens=10, ce_clean=2.0, ce_spliced=2.5, ce_zero=6.0,
                                                       ce_recovered=0.875, kl=0.3)))
    spec = rendered(report)
    table = spec["children"][0]
    assert table["rows"][0][:2] == ["sae", "topk"] and has_number(table, 0.125) and has_number(table, 0.875)
    assert spec["children"][1]["values"] == [2, 3, 5]
    assert_empty(EvalReport())


def test_attribution_graph_viewer(llama):
    from circuits.helpers import random_transcoders

    from mechscope.circuits import AttributionConfig, attribute

    graph = attribute(llama, random_transcoders(llama), "hello there", cfg=AttributionConfig(batch_size=64))
    spec = rendered(graph)
    data = graph.to_json()
    assert spec["kind"] == "graph" and [n["node_id"] for n in spec["graph"]["nodes"]] == \
        [n["node_id"] for n in data["nodes"]]
    link = data["links"][0]
    assert any(x["source"] == link["source"] and abs(x["weight"] - link["weight"]) <= 1e-5 * max(1, abs(link["weight"]))
               for x in spec["graph"]["links"])
