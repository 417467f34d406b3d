"""The per-feature scale that undoes L1 shrinkage, and activation normalisation factors."""

import pytest
import torch

import mechscope.dictionaries as D


def test_fit_feature_scale_recovers_known_scale():
    torch.manual_seed(0)
    d = D.create("relu", d_in=16, d_sae=24)
    x = torch.randn(400, 16)
    f = d.encode(x)
    active = (f != 0).any(0)
    assert active.sum() > 10
    c_true = torch.linspace(0.5, 2.0, 24)
    target = d.decode(f * c_true).detach()
    c = D.fit_feature_scale(d, x, target)
    assert c.shape == (24,)
    assert torch.allclose(c[active], c_true[active], atol=1e-3)
    assert torch.equal(c[~active], torch.ones(int((~active).sum())))
    d.set_feature_scale(c)
    assert (d(x).reconstruction - target).pow(2).mean() < 1e-6
    # folding into the decoder keeps the reconstruction and removes the buffer
    before = d(x).reconstruction
    d.fold_feature_scale()
    assert d.feature_scale is None and torch.allclose(d(x).reconstruction, before, atol=1e-5)


def test_feature_scale_undoes_shrinkage_and_lowers_error():
    torch.manual_seed(1)
    d = D.create("relu", d_in=8, d_sae=8, apply_b_dec_to_input=False)
    with torch.no_grad():
        d.W_enc.copy_(torch.eye(8))
        d.W_dec.copy_(torch.eye(8))
        d.b_enc.fill_(-0.3)  # an L1-style shrinkage: every active latent is 0.3 too small
    x = (torch.rand(300, 8) + 1.0) * (torch.rand(300, 8) < 0.3)  # sparse positive codes
    before = d.loss_terms(x)["mse"]
    c = D.fit_feature_scale(d, x)
    assert (c > 1).all()
    d.set_feature_scale(c)
    assert d.loss_terms(x)["mse"] < 0.5 * before


def test_feature_scale_for_topk_and_transcoder():
    torch.manual_seed(2)
    tc = D.create("transcoder", d_in=8, d_sae=16, d_out=5, activation="topk", k=4)
    x = torch.randn(200, 8)
    c_true = torch.linspace(0.8, 1.6, 16)
    target = tc.decode(tc.encode(x) * c_true).detach()
    with pytest.raises(D.DictionaryConfigError, match="target"):
        D.fit_feature_scale(tc, x)
    c = D.fit_feature_scale(tc, x, target)
    active = (tc.encode(x) != 0).any(0)
    assert torch.allclose(c[active], c_true[active], atol=1e-3)


def test_set_activation_norm_validation():
    d = D.create("relu", d_in=4, d_sae=8)
    with pytest.raises(D.DictionaryShapeError, match="broadcast"):
        d.set_activation_norm(torch.ones(3))
    with pytest.raises(D.DictionaryConfigError, match="non-zero"):
        d.set_activation_norm(0.0)
    tc = D.create("transcoder", d_in=4, d_sae=8, d_out=3)
    with pytest.raises(D.DictionaryConfigError, match="scale_out"):
        tc.set_activation_norm(2.0)
    tc.set_activation_norm(2.0, torch.tensor([1.0, 2.0, 4.0]))
    x = torch.randn(5, 4)
    f = torch.relu(2.0 * x @ tc.W_enc + tc.b_enc)
    assert torch.allclose(tc(x).reconstruction, (f @ tc.W_dec + tc.b_dec) / torch.tensor([1.0, 2.0, 4.0]), atol=1e-5)
    before = tc(x).reconstruction
    tc.fold_activation_norm()
    assert torch.allclose(tc(x).reconstruction, before, atol=1e-5)
