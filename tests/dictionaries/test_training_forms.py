"""The training-time shortcuts (encoder centring folded into a vector-matrix product, L1 summed before weighting)
compute the same loss and gradients as the textbook formulas."""

import torch

import mechscope as ms
from mechscope.dictionaries.relu import l1_penalty


def test_pre_acts_and_gradients_match_the_centred_formula():
    torch.manual_seed(0)
    d = ms.dictionaries.create("relu", d_in=16, d_sae=48)
    with torch.no_grad():
        d.b_dec.normal_()
        d.b_enc.normal_()
    x = torch.randn(32, 16) * 3
    fast = d.pre_acts(x)  # grad enabled: the training form
    (g_fast,) = torch.autograd.grad(fast.relu().pow(2).sum(), [d.b_dec])
    slow = (x - d.b_dec) @ d.W_enc + d.b_enc
    (g_slow,) = torch.autograd.grad(slow.relu().pow(2).sum(), [d.b_dec])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-4)
    assert g_fast.abs().sum() > 0
    with torch.no_grad():  # inference keeps the original formula exactly
        assert torch.equal(d.pre_acts(x), (x - d.b_dec) @ d.W_enc + d.b_enc)


def test_l1_penalty_equals_the_elementwise_formula():
    torch.manual_seed(1)
    f = torch.randn(4, 8, 32).relu().requires_grad_()
    norms = torch.rand(32) + 0.5
    fast = l1_penalty(f, norms, nonnegative=True)
    slow = (f.abs() * norms).sum(-1).mean()
    torch.testing.assert_close(fast, slow)
    g_fast, = torch.autograd.grad(fast, f)
    g_slow, = torch.autograd.grad(slow, f)
    torch.testing.assert_close(g_fast * (f > 0), g_slow * (f > 0))
    signed = torch.randn(10, 32)
    torch.testing.assert_close(l1_penalty(signed, None), signed.abs().sum(-1).mean())
