"""ACDC: edge-level patching is exact at the extremes, and on the trained induction toy it finds the known circuit."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import hooked

from mechscope.circuits.acdc import AcdcConfig, EdgePatcher, acdc, draw


@pytest.mark.parametrize("fam", ["llama", "gpt2", "neox"])
def test_edge_patcher_all_edges_is_the_model_and_no_edges_is_the_corrupted_run(fam):
    model = hooked(fam)
    gen = torch.Generator().manual_seed(0)
    clean, corrupt = torch.randint(0, 256, (3, 8), generator=gen), torch.randint(0, 256, (3, 8), generator=gen)
    p = EdgePatcher(model, clean, corrupt)
    assert torch.allclose(p.run(set(p.edges)), model(clean), atol=1e-4)
    assert torch.allclose(p.run(set()), model(corrupt), atol=1e-4)
    # removing one edge changes only what that receiver reads
    one = set(p.edges) - {("embed", "logits")}
    assert not torch.allclose(p.run(one), model(clean), atol=1e-4)


def test_zero_and_mean_ablation_and_refusals():
    model = hooked("llama")
    clean = torch.randint(0, 256, (4, 6), generator=torch.Generator().manual_seed(1))
    p = EdgePatcher(model, clean, None, ablation="mean")
    assert torch.allclose(p.run(set(p.edges)), model(clean), atol=1e-4)
    with pytest.raises(ValueError, match="corrupted"):
        EdgePatcher(model, clean, None, ablation="resample")
    with pytest.raises(ValueError, match="post-attention norm"):
        EdgePatcher(hooked("gemma2"), clean, clean)


def test_logit_diff_metric_runs_on_tiny_model(tmp_path):
    model = hooked("llama")
    gen = torch.Generator().manual_seed(2)
    clean, corrupt = torch.randint(0, 256, (2, 5), generator=gen), torch.randint(0, 256, (2, 5), generator=gen)
    cfg = AcdcConfig(threshold=0.05, metric="logit_diff", include_mlps=False)
    answers, wrong = torch.tensor([1, 2]), torch.tensor([3, 4])
    r = acdc(model, clean, corrupt, cfg, answers=answers, wrong=wrong)
    assert len(r.edges) < len(r.all_edges)

    def minus_logit_diff(logits: torch.Tensor) -> float:
        x = logits[:, -1].detach().float()
        return -float((x[[0, 1], answers] - x[[0, 1], wrong]).mean())

    # loss_full is the metric of the model itself on the clean prompts.
    assert r.loss_full == pytest.approx(minus_logit_diff(model(clean)), abs=1e-6)
    # loss_empty: every edge carries its corrupted value, so the logits read the corrupted run's embedding, head
    # outputs and attention biases. With include_mlps=False the MLPs are not in the graph at all, so their outputs
    # are missing too: loss_empty is the corrupted run with every MLP output taken out of the final residual, not
    # the corrupted run itself (for these prompts they differ by about 0.02).
    L = model.cfg.n_layers
    with torch.no_grad():
        _, cache = model.run_with_cache(corrupt, names=[f"blocks.{l}.mlp_out" for l in range(L)], stop_early=False)
        mlp_total = sum(cache[f"blocks.{l}.mlp_out"] for l in range(L))
        with model.hooks([(f"blocks.{L - 1}.resid_post", lambda act, hook: act - mlp_total)]):
            corrupt_without_mlps = model(corrupt)
    assert r.loss_empty == pytest.approx(minus_logit_diff(corrupt_without_mlps), abs=1e-5)
    assert abs(r.loss_empty - minus_logit_diff(model(corrupt))) > 1e-3  # the MLPs do matter here
    draw(r, str(tmp_path / "c.png"), model.cfg.n_layers, model.cfg.n_heads)
    assert (tmp_path / "c.png").stat().st_size > 1000
    json.dumps(r.to_json())


def test_acdc_finds_the_induction_circuit(induction_model):
    from mechscope.toy.induction import InductionConfig, acdc_task, head_scores

    model, cfg = induction_model, InductionConfig()
    scores = head_scores(model, cfg)
    prev = int(scores["previous_token"][0].argmax())
    assert scores["previous_token"][0, prev] > 0.5
    induction_heads = (scores["induction"][1] > 0.5).nonzero(as_tuple=True)[0].tolist()
    assert induction_heads
    clean, corrupt, loss = acdc_task(model, cfg, n=16)
    r = acdc(model, clean, corrupt, AcdcConfig(threshold=0.03), loss_fn=loss)
    kept = set(r.edges)
    assert ("embed", f"0.{prev}") in kept
    assert any((f"0.{prev}", f"1.{h}") in kept for h in induction_heads)  # previous-token -> induction head
    assert any((f"1.{h}", "logits") in kept for h in induction_heads)
    assert len(r.edges) <= 0.35 * len(r.all_edges)  # most edges dropped
    assert not any("mlp" in s or "mlp" in t for s, t in r.edges)  # the zeroed MLPs carry nothing
    assert r.recovered >= 0.9, r
