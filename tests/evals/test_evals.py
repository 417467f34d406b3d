"""Evaluation metrics against hand computations and against dictionaries whose answer is known by construction."""

from pathlib import Path

import pytest
import torch

import mechscope as ms
from mechscope.evals import (SCHEMA, DictionaryEval, EvalReport, evaluate, evaluate_activations, plot_eval,
                             read_eval)
from tiny import hooked

HOOK = "blocks.1.resid_post"


def identity_sae(d: int) -> ms.dictionaries.Dictionary:
    """ReLU SAE with d_sae = 2d computing relu(x) - relu(-x) = x exactly."""
    sae = ms.dictionaries.create("relu", d_in=d, d_sae=2 * d, hook_name=HOOK)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def test_reconstruction_metrics_match_hand_computation() -> None:
    torch.manual_seed(0)
    sae = ms.dictionaries.create("topk", d_in=8, d_sae=32, k=3).eval()
    x = torch.randn(100, 8) * 2 + 1
    r = evaluate_activations(sae, x, batch_size=7)  # batching must not matter
    with torch.no_grad():
        out = sae(x)
    err = (out.reconstruction - x).pow(2).sum(-1)
    assert r.rows == 100
    assert r.mse == pytest.approx(float(err.mean()), rel=1e-5)
    assert r.fvu == pytest.approx(float(err.sum() / (x - x.mean(0)).pow(2).sum()), rel=1e-5)
    assert r.l0 == pytest.approx(float((out.feature_acts != 0).sum(-1).float().mean()))
    cos = torch.nn.functional.cosine_similarity(out.reconstruction, x, dim=-1).mean()
    assert r.cosine == pytest.approx(float(cos), rel=1e-5)
    freq = (out.feature_acts != 0).float().mean(0)
    assert r.dead_fraction == pytest.approx(float((freq == 0).float().mean()))
    h = r.density_histogram
    assert sum(h["counts"]) + h["never_fired"][0] == 32


def test_identity_dictionary_recovers_everything_and_zero_recovers_nothing(tmp_path: Path) -> None:
    model = hooked("llama")
    torch.manual_seed(1)
    contexts = [torch.cat([torch.tensor([256]), torch.randint(0, 256, (15,))]) for _ in range(6)]
    perfect = identity_sae(model.cfg.d_model)
    zero = identity_sae(model.cfg.d_model)
    with torch.no_grad():
        zero.W_dec.zero_()
    report = evaluate(model, {"perfect": perfect, "zero": zero}, contexts, model_batch=4)
    p, z = report.dictionaries["perfect"], report.dictionaries["zero"]
    assert p.reconstruction.fvu < 1e-10 and p.downstream.kl == pytest.approx(0.0, abs=1e-6)
    assert p.downstream.ce_recovered == pytest.approx(1.0, abs=1e-4)
    assert p.downstream.tokens == 6 * 14  # BOS positions excluded, last position has no next token
    assert z.downstream.ce_recovered == pytest.approx(0.0, abs=1e-6)
    assert z.downstream.ce_spliced == pytest.approx(z.downstream.ce_zero)
    assert z.downstream.kl > 0.0
    data = report.to_json()
    assert data["schema"] == SCHEMA and set(data["dictionaries"]) == {"perfect", "zero"}
    path = report.write(tmp_path / "eval.json")
    assert read_eval(path)["dictionaries"]["perfect"]["downstream"]["ce_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert plot_eval(report, tmp_path / "eval.png").stat().st_size > 1000


def test_read_eval_checks_schema(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text('{"schema": "other"}')
    with pytest.raises(ValueError, match="schema"):
        read_eval(tmp_path / "e.json")


def test_report_without_downstream() -> None:
    sae = ms.dictionaries.create("relu", d_in=4, d_sae=8)
    r = EvalReport()
    r.add("a", sae, DictionaryEval(evaluate_activations(sae, torch.randn(10, 4))))
    assert r.to_json()["dictionaries"]["a"]["downstream"] is None
