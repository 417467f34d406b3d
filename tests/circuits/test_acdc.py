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
    r = acdc(model, clean, corrupt, cfg, answers=torch.tensor([1, 2]), wrong=torch.tensor([3, 4]))
    assert len(r.edges) < len(r.all_edges) and r.loss_full <= r.loss_empty + 10
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
