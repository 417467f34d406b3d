"""Linear probes: fitting on planted linear structure, controls, CV, per-layer sweeps on a tiny model."""

import pytest
import torch

from mechscope.probes import ProbeConfig, evaluate_probe, fit_probe, probe_layers, token_labels, is_capitalised
from mechscope.probes.linear import control_labels


def planted(n=400, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3, d)
    w = torch.randn(d, generator=g)
    return x, w


def test_logistic_probe_recovers_a_planted_direction_and_shuffle_control_is_chance():
    x, w = planted()
    y = (x @ w > 0).long()
    cfg = ProbeConfig()
    train, test = evaluate_probe(x, y, cfg)
    assert test > 0.95 and train > 0.95
    _, ctrl = evaluate_probe(x, control_labels(y, None, cfg), cfg)
    assert ctrl < 0.7
    cv = evaluate_probe(x, y, ProbeConfig(folds=4))[1]
    assert cv > 0.95


def test_ridge_probe_recovers_a_linear_target():
    x, w = planted()
    y = x @ w + 0.5
    probe = fit_probe(x, y, "regression", l2=0.0)
    assert probe.evaluate(x, y) > 0.9999
    torch.testing.assert_close(probe.predict(x), y, atol=1e-3, rtol=1e-3)


def test_random_token_control_keeps_label_per_token_type():
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    ids = torch.tensor([5, 5, 7, 7, 9, 9])
    c = control_labels(y, ids, ProbeConfig(control="random_token"))
    assert c[0] == c[1] and c[2] == c[3] and c[4] == c[5]


def test_probe_layers_finds_the_layer_where_a_property_is_planted():
    from tiny import hooked

    model = hooked("llama")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (24, 16), generator=g)
    _, cache = model.run_with_cache(ids, names=["blocks.1.resid_post"])
    direction = torch.randn(model.cfg.d_model, generator=g)
    proj = cache["blocks.1.resid_post"] @ direction  # (B, T)
    labels = (proj > proj.median()).long()
    labels[(proj - proj.median()).abs() < 0.2 * proj.std()] = -1  # leave out examples right at the boundary
    res = probe_layers(model, ids, labels, layers=[0, 1, 2])
    assert res.test[1] > 0.9 and res.test[1] >= res.test.max() - 1e-6
    assert (res.selectivity()[1] > 0.3)
    assert res.layer_labels == ["L0", "L1", "L2"] and "control accuracy" in res.to_markdown()
    assert res.plot().axes


def test_labels_and_errors():
    from tiny import hooked

    model = hooked("llama")
    labels = token_labels(model, ["aB c", "D"], is_capitalised)
    assert labels.tolist() == [[0, 1, -1, 0], [1, -1, -1, -1]]
    with pytest.raises(ValueError, match=r"labels have shape \(1, 3\).*\(2, 4\)"):
        probe_layers(model, ["aB c", "D"], torch.zeros(1, 3, dtype=torch.long), layers=[0])
    with pytest.raises(ValueError, match="single class"):
        probe_layers(model, ["aB c", "D"], torch.zeros(2, 4, dtype=torch.long), layers=[0])
    with pytest.raises(ValueError, match="folds"):
        ProbeConfig(folds=1)
