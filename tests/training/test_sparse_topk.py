"""The sparse-gradient TopK step computes the same loss and gradients as the dictionary's generic autograd path."""

import pytest
import torch

import mechscope as ms
from mechscope.training.sparse_topk import supports, topk_loss_terms


def _grads(d, loss):
    d.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in d.named_parameters()}


@pytest.mark.parametrize("transcoder", [False, True, "skip"])
@pytest.mark.parametrize("with_dead", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_generic_autograd(transcoder, with_dead: bool, weighted: bool) -> None:
    torch.manual_seed(0)
    kw = dict(transcoder=True, apply_b_dec_to_input=False, d_out=12) if transcoder else {}
    if transcoder == "skip":
        kw["skip_connection"] = True
    d = ms.dictionaries.create("topk", d_in=16, d_sae=96, k=5, **kw)
    with torch.no_grad():
        if transcoder == "skip":
            d.W_skip.normal_(std=0.2)
        d.b_dec.normal_()
        d.b_enc.normal_(std=0.1)
        d.W_dec.mul_(torch.rand(96, 1) + 0.5)
    x = torch.randn(64, 16)
    target = torch.randn(64, 12) if transcoder else x
    dead = (torch.arange(96) % 3 == 0) if with_dead else None
    w = torch.rand(64) if weighted else None  # per-row loss weights (LoopConfig.row_norm_cap)
    assert supports(d)

    generic = d.loss_terms(x, target=target if transcoder else None, dead_mask=dead, row_weight=w)
    g_ref = _grads(d, generic["mse"] + 0.5 * generic["auxk"])
    fast, fired = topk_loss_terms(d, x, target, dead, w)
    g_fast = _grads(d, fast["mse"] + 0.5 * fast["auxk"])
    for key in ("mse", "fvu", "l0", "auxk"):
        assert torch.allclose(fast[key], generic[key], rtol=1e-5, atol=1e-6), key
    if with_dead:
        assert fast["auxk"] > 0
    for name in g_ref:
        assert torch.allclose(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-6), name
    with torch.no_grad():
        assert torch.equal(fired, (d(x).feature_acts != 0).any(0))


def test_not_used_for_other_architectures() -> None:
    assert not supports(ms.dictionaries.create("batchtopk", d_in=8, d_sae=16, k=2))
    assert not supports(ms.dictionaries.create("relu", d_in=8, d_sae=16))
