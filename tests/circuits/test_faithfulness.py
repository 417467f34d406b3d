"""The faithfulness harness on tiny models: exact where the graph's linear model holds, visibly not elsewhere."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import hooked, save_model_dir

from mechscope.circuits import AttributionConfig, attribute
from mechscope.circuits.faithfulness import FaithfulnessConfig, faithfulness, predict_change, total_effects
from mechscope.circuits.interventions import predict_ablation

from .helpers import random_clt, random_transcoders

TOKENS = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(5))


def always_on(model, clt: bool = False):
    """Transcoders whose features all fire at every position by a wide margin (encoder bias 5, small decoders):
    no intervention below switches a feature on or off, so the frozen replacement model is linear."""
    tcs = random_clt(model, d_sae=12, bias=5.0) if clt else random_transcoders(model, d_sae=16, bias=5.0)
    with torch.no_grad():
        for t in [tcs] if clt else tcs:
            t.W_dec.mul_(0.05)
    return tcs


def run(model, tcs, cfg, max_feature_nodes=None):
    graph = attribute(model, tcs, TOKENS, cfg=AttributionConfig(batch_size=128, max_n_logits=1,
                                                                max_feature_nodes=max_feature_nodes))
    return graph, faithfulness(model, tcs, TOKENS, int(graph.logit_tokens[0]), graph=graph, cfg=cfg)


@pytest.mark.parametrize("clt", [False, True])
def test_exact_where_the_replacement_is_linear(clt):
    model = hooked("llama")
    graph, res = run(model, always_on(model, clt), FaithfulnessConfig(n_features=8, settings=("graph", "replacement")))
    assert graph.n_features == graph.n_layers * graph.n_pos * (12 if clt else 16)  # every feature is a node
    for s in res.baseline:  # no edit: every setting reproduces the graph's target value
        assert res.baseline[s] == pytest.approx(res.target_value, abs=1e-4)
    rows = res.rows
    assert len(rows) == 8 and all(r.crossed_ablation["graph"] == 0 and r.crossed_steer["graph"] == 0 for r in rows)
    scale = max(abs(r.predicted_ablation) for r in rows)
    assert scale > 0.02  # not vacuous
    for r in rows:
        assert r.measured_ablation["graph"] == pytest.approx(r.predicted_ablation, abs=1e-5 * max(1, scale))
        assert r.measured_steer["graph"] == pytest.approx(r.predicted_steer, abs=1e-5 * max(1, scale))
    assert res.ablation["graph"].pearson == pytest.approx(1.0, abs=1e-4)
    assert res.steering["graph"].pearson == pytest.approx(1.0, abs=1e-4)
    assert res.ablation["graph"].sign_agreement == 1.0
    for group in (res.top_group, res.random_group):
        assert len(group.node_ids) == 8
        assert group.measured["graph"] == pytest.approx(group.predicted, abs=1e-5 * max(1, abs(group.predicted)))
    # live attention and norms are not linear: the same harness reports the mismatch
    rep = res.ablation["replacement"]
    assert rep.max_abs_error > 0.05 * rep.max_abs_predicted and rep.pearson < 0.999


def test_diagnostic_settings_unfreeze_one_nonlinearity_each():
    """frozen_attention keeps only the patterns frozen (norm scales live), frozen_norms only the scales: each
    departs from the exact graph setting, and by a different amount than the replacement setting (both live)."""
    model = hooked("llama")
    settings = ("graph", "frozen_attention", "frozen_norms", "replacement")
    _, res = run(model, always_on(model), FaithfulnessConfig(n_features=6, settings=settings))
    meas = {s: torch.tensor([r.measured_ablation[s] for r in res.rows]) for s in settings}
    pred = torch.tensor([r.predicted_ablation for r in res.rows])
    scale = float(pred.abs().max())
    assert float((meas["graph"] - pred).abs().max()) < 1e-5 * max(1, scale)
    for s in ("frozen_attention", "frozen_norms"):
        assert float((meas[s] - pred).abs().max()) > 1e-3 * scale, s  # one nonlinearity live: not exact
        assert float((meas[s] - meas["replacement"]).abs().max()) > 1e-4 * scale, s  # and not both live
    for s in settings:
        assert res.baseline[s] == pytest.approx(res.target_value, abs=1e-4)


def test_large_interventions_cross_thresholds_and_are_reported():
    """Ordinary transcoders (features near threshold) and steering x30: in the frozen model the prediction is still
    exact for every row where no feature switched, and off where some did; live attention is off everywhere."""
    model = hooked("llama")
    graph, res = run(model, random_transcoders(model, d_sae=24),
                     FaithfulnessConfig(n_features=10, steer=30.0, settings=("graph", "replacement", "real")))
    crossed = [r for r in res.rows if r.crossed_steer["graph"] > 0]
    exact = [r for r in res.rows if r.crossed_steer["graph"] == 0]
    assert crossed and exact
    for r in exact:
        assert r.measured_steer["graph"] == pytest.approx(r.predicted_steer, abs=1e-4 * max(1, abs(r.predicted_steer)))
    worst = max(abs(r.measured_steer["graph"] - r.predicted_steer) / abs(r.predicted_steer) for r in crossed)
    assert worst > 0.05
    for s in ("graph", "replacement", "real"):
        st = res.steering[s]
        assert st.n == 10 and st.pearson < 0.999 and st.max_abs_error > 0.05 * st.max_abs_predicted
    assert res.baseline["real"] == pytest.approx(res.target_value, abs=1e-4)


def test_predictions_agree_with_iterative_propagation():
    model = hooked("llama")
    graph = attribute(model, random_transcoders(model), TOKENS, cfg=AttributionConfig(batch_size=64,
                                                                                      max_n_logits=2))
    t = graph.logit_offset + 1
    tau = total_effects(graph, t)
    for i in (0, graph.n_features // 2, graph.n_features - 1):
        a = float(graph.activations[i])
        iterative = float(predict_ablation(graph, [i])[t])  # interventions.py: fixed-point propagation
        assert -a * float(tau[i]) == pytest.approx(iterative, rel=1e-4, abs=1e-6)
        assert predict_change(graph, t, {i: -a}) == pytest.approx(iterative, rel=1e-4, abs=1e-6)
    group = list(range(0, graph.n_features, 3))
    assert predict_change(graph, t, {i: -float(graph.activations[i]) for i in group}) == pytest.approx(
        float(predict_ablation(graph, group)[t]), rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="feature node"):
        predict_change(graph, t, {graph.n_features: 1.0})


def test_ranking_json_and_errors():
    model = hooked("llama")
    tcs = random_transcoders(model)
    graph = attribute(model, tcs, TOKENS, cfg=AttributionConfig(batch_size=64, max_feature_nodes=40,
                                                                max_n_logits=1))
    tok = int(graph.logit_tokens[0])
    res = faithfulness(model, tcs, TOKENS, tok, graph=graph,
                       cfg=FaithfulnessConfig(n_features=5, rank_by="effect", steer=0.5, steer_mode="add",
                                              settings=("graph",)))
    effects = sorted((abs(float(a) * float(x)) for a, x in zip(graph.activations, total_effects(
        graph, graph.logit_offset))), reverse=True)
    assert [r.rank_score for r in res.rows] == pytest.approx(effects[:5])
    assert all(r.predicted_steer == pytest.approx(0.5 * r.total_effect) for r in res.rows)
    # features outside the 40-node graph are held in the graph setting, so single rows stay exact where nothing crossed
    assert all(r.measured_ablation["graph"] == pytest.approx(r.predicted_ablation, abs=1e-4)
               for r in res.rows if r.crossed_ablation["graph"] == 0)
    text = json.dumps(res.to_json(), allow_nan=False)
    back = json.loads(text)
    assert back["rows"][0]["node_id"] == res.rows[0].node_id and "graph" in back["ablation"]
    with pytest.raises(ValueError, match="not a logit node"):
        faithfulness(model, tcs, TOKENS, (tok + 1) % 256, graph=graph)
    with pytest.raises(ValueError, match="settings"):
        FaithfulnessConfig(settings=("frozen",))


def test_faithfulness_cli(tmp_path, capsys):
    import mechscope as ms
    from mechscope.cli.main import main
    from mechscope.dictionaries import save_transcoder_set

    model_dir = save_model_dir(tmp_path / "model")
    model = ms.load_model(str(model_dir))
    save_transcoder_set(random_transcoders(model), tmp_path / "tc", model_name=model.cfg.name)  # "real" splices them
    out = tmp_path / "out"
    rc = main(["faithfulness", "--model", str(model_dir), "--transcoders", str(tmp_path / "tc"), "--prompt",
               "hello there", "--target", "e", "--out", str(out), "--n-features", "4", "--settings", "graph",
               "real", "--max-feature-nodes", "60"])
    assert rc == 0
    data = json.loads((out / "faithfulness.json").read_text())
    assert data["target_str"] == "e" and len(data["rows"]) == 4 and set(data["ablation"]) == {"graph", "real"}
    meta = json.loads((out / "graph.json").read_text())["metadata"]
    assert meta["replacement_score"] == pytest.approx(data["replacement_score"])
    assert "ablation r=" in capsys.readouterr().out
    assert meta["live"] == []
    rc = main(["faithfulness", "--model", str(model_dir), "--transcoders", str(tmp_path / "tc"), "--prompt",
               "hello there", "--target", "e", "--out", str(tmp_path / "live"), "--n-features", "4", "--settings",
               "graph", "--max-feature-nodes", "60", "--live-norms", "--live-attention"])
    assert rc == 0
    assert json.loads((tmp_path / "live" / "graph.json").read_text())["metadata"]["live"] == ["norms", "attention"]
    rc = main(["faithfulness", "--model", str(model_dir), "--transcoders", str(tmp_path / "tc"), "--prompt", "hi",
               "--target", "ab", "--out", str(out)])
    assert rc == 2


@pytest.mark.parametrize("live", [("norms",), ("attention",), ("norms", "attention")])
def test_live_graphs_predict_small_changes_to_first_order(live, tmp_path):
    """A graph that differentiates through the norm scales and/or attention patterns predicts a steer in the
    replacement model with those live to first order: its relative error shrinks with the size of the steer, while
    the frozen graph's stays (a first-order term it leaves out)."""
    from mechscope.circuits import AttributionGraph

    model = hooked("llama")
    tcs = always_on(model)
    frozen = attribute(model, tcs, TOKENS, cfg=AttributionConfig(batch_size=128, max_n_logits=1))
    graph = attribute(model, tcs, TOKENS, cfg=AttributionConfig(batch_size=128, max_n_logits=1,
                                                                live_norms="norms" in live,
                                                                live_attention="attention" in live))
    assert graph.live == live and frozen.live == ()
    setting = {("norms",): "frozen_attention", ("attention",): "frozen_norms"}.get(live, "replacement")
    tok = int(graph.logit_tokens[0])

    def relative_error(g, steer):
        res = faithfulness(model, tcs, TOKENS, tok, graph=g,
                           cfg=FaithfulnessConfig(n_features=8, steer=steer, settings=("graph", setting)))
        pred = torch.tensor([r.predicted_steer for r in res.rows])
        meas = torch.tensor([r.measured_steer[setting] for r in res.rows])
        assert float(pred.abs().max()) > 1e-4  # not vacuous
        return res, float((pred - meas).abs().max() / pred.abs().max())

    res, coarse = relative_error(graph, 1.05)
    _, fine = relative_error(graph, 1.01)
    _, frozen_coarse = relative_error(frozen, 1.05)
    _, frozen_fine = relative_error(frozen, 1.01)
    assert fine < 0.5 * coarse and fine < 0.2 * frozen_fine, (coarse, fine, frozen_fine)
    assert frozen_fine > 0.8 * frozen_coarse > 0.02, (frozen_coarse, frozen_fine)
    # the graph setting of a live graph keeps the same things live
    assert all(r.measured_steer["graph"] == pytest.approx(r.measured_steer[setting], abs=1e-6) for r in res.rows)
    # what the graph differentiated through travels with it
    assert json.loads(json.dumps(graph.to_json()))["metadata"]["live"] == list(live)
    assert AttributionGraph.load(graph.save(tmp_path / "g")).live == live
    with pytest.raises(ValueError, match="live may hold"):
        AttributionGraph(**{**graph.__dict__, "live": ("mlp",)})
