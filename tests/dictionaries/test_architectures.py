"""Per-architecture behaviour: shapes, sparsity rules, gradients, sparse decode, loss terms, config errors."""

import pytest
import torch

import mechscope.dictionaries as D
from mechscope.dictionaries.jumprelu import jumprelu, step

D_IN, D_SAE = 8, 32

# name -> create() keywords; every architecture of the issue
ARCHS = {
    "relu": {},
    "topk": {"k": 4},
    "batchtopk": {"k": 4},
    "jumprelu": {},
    "gated": {},
    "transcoder": {"d_out": 6},
    "skip_transcoder": {"d_out": 6, "activation": "jumprelu"},
    "crosscoder": {"n_layers": 3},
    "clt": {"n_layers": 3},
}


def make(arch, **kw):
    torch.manual_seed(0)
    return D.create(arch, d_in=D_IN, d_sae=D_SAE, **{**ARCHS[arch], **kw})


def input_for(d, *lead):
    torch.manual_seed(1)
    return torch.randn(*lead, *d.input_shape())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_shapes(arch):
    d = make(arch)
    x = input_for(d, 2, 5)
    out = d(x)
    assert out.reconstruction.shape == (2, 5, *d.output_shape())
    assert out.feature_acts.shape == (2, 5, *d.latent_shape()) == out.pre_acts.shape
    assert torch.allclose(d.encode(x), out.feature_acts)
    assert torch.allclose(d.decode(out.feature_acts, x), out.reconstruction, atol=1e-5)
    # widths recorded as given
    assert (d.d_in, d.d_sae) == (D_IN, D_SAE)
    if arch in ("transcoder", "skip_transcoder"):
        assert d.d_out == 6 and d.cfg.transcoder and not d.cfg.apply_b_dec_to_input


@pytest.mark.parametrize("arch", list(ARCHS))
def test_loss_terms_are_scalars_with_gradients(arch):
    d = make(arch)
    x = input_for(d, 16)
    target = torch.randn(16, *d.output_shape()) if d.cfg.transcoder else None
    terms = d.loss_terms(x, target=target, dead_mask=torch.ones(D_SAE, dtype=torch.bool))
    assert {"mse", "fvu", "l0"} <= set(terms)
    expected_mse = (d(x).reconstruction - (x if target is None else target)).pow(2)
    expected_mse = expected_mse.reshape(16, -1).sum(-1).mean()
    assert torch.allclose(terms["mse"], expected_mse)
    total = sum(v for k, v in terms.items() if v.requires_grad)
    total.backward()
    assert d.W_dec.grad is not None and d.W_dec.grad.abs().sum() > 0


def test_relu_l1_variants():
    x = torch.randn(10, D_IN)
    plain = make("relu")
    weighted = make("relu", l1_weighting="decoder_norm")
    with torch.no_grad():
        weighted.W_dec.mul_(2.0)
        plain.W_dec.mul_(2.0)
    f = plain.encode(x)
    assert torch.allclose(plain.loss_terms(x)["l1"], f.sum(-1).mean())
    assert torch.allclose(weighted.loss_terms(x)["l1"], 2 * f.sum(-1).mean(), rtol=1e-5)
    plain.normalize_decoder_()
    assert torch.allclose(plain.W_dec.norm(dim=1), torch.ones(D_SAE))
    with pytest.raises(D.DictionaryConfigError, match="l1_weighting"):
        make("relu", l1_weighting="sqrt")


def test_remove_parallel_decoder_grad():
    d = make("relu")
    d.loss_terms(torch.randn(10, D_IN))["mse"].backward()
    d.remove_parallel_decoder_grad_()
    assert (d.W_dec.grad * d.W_dec).sum(1).abs().max() < 1e-5


def test_topk_exactly_k_active_and_sparse_decode_equals_dense():
    d = make("topk", k=5)
    with torch.no_grad():
        d.b_enc.fill_(10.0)  # every pre-activation positive, so exactly k survive the ReLU
    x = torch.randn(3, 7, D_IN)
    out = d(x)
    assert ((out.feature_acts != 0).sum(-1) == 5).all()
    # the kept latents are the k largest pre-activations
    top = out.pre_acts.topk(5, dim=-1).indices
    assert torch.equal((out.feature_acts != 0).nonzero()[:, -1].reshape(3, 7, 5).sort(-1).values, top.sort(-1).values)
    dense = out.feature_acts @ d.W_dec + d.b_dec
    assert (out.reconstruction - dense).abs().max() <= 1e-5
    values, indices, _ = d.encode_topk(x)
    manual = torch.einsum("btk,btkd->btd", values, d.W_dec[indices]) + d.b_dec
    assert (d.decode_sparse(values, indices) - manual).abs().max() <= 1e-5


def test_topk_gradients_reach_encoder_through_sparse_decode():
    d = make("topk", k=3)
    x = torch.randn(6, D_IN)
    d.loss_terms(x)["mse"].backward()
    assert d.W_enc.grad.abs().sum() > 0 and d.b_enc.grad.abs().sum() > 0
    # only latents that were selected get encoder-bias gradient
    active = (d(x).feature_acts != 0).any(0)
    assert (d.b_enc.grad[~active] == 0).all()


def test_topk_auxk_uses_dead_latents():
    d = make("topk", k=3)
    x = torch.randn(20, D_IN)
    none_dead = d.loss_terms(x)["auxk"]
    assert none_dead == 0
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:10] = True
    aux = d.loss_terms(x, dead_mask=dead)["auxk"]
    assert aux > 0
    aux.backward()
    assert d.W_dec.grad[:10].abs().sum() > 0 and d.W_dec.grad[10:].abs().sum() == 0


def test_batchtopk_k_on_average_and_threshold_for_inference():
    d = make("batchtopk", k=4)
    x = torch.randn(50, D_IN)
    d.train()
    acts = d.encode(x)
    n_active = (acts != 0).sum()
    assert n_active == 4 * 50
    per_row = (acts != 0).sum(-1)
    assert per_row.float().mean() == 4 and per_row.min() != per_row.max()  # k on average, not per row
    d.update_threshold(acts)
    smallest = acts[acts > 0].min()
    assert torch.isclose(d.threshold, smallest)
    d.eval()
    eval_acts = d.encode(x)
    pre = d.pre_acts(x)
    assert torch.equal(eval_acts, pre.relu() * (pre > smallest))
    # inference on one row does not depend on the rest of the batch
    assert torch.equal(d.encode(x[:1]), eval_acts[:1])
    # conversion to JumpReLU keeps the inference function
    jr = d.to_jumprelu()
    assert torch.allclose(jr.encode(x), eval_acts) and torch.allclose(jr(x).reconstruction, d(x).reconstruction)


def test_batchtopk_threshold_moving_average():
    d = make("batchtopk", k=2, threshold_lr=0.5)
    d.update_threshold(torch.tensor([[0.0, 2.0]]))
    d.update_threshold(torch.tensor([[0.0, 1.0]]))
    assert torch.isclose(d.threshold, torch.tensor(1.5))


def test_jumprelu_zero_below_threshold():
    d = make("jumprelu")
    with torch.no_grad():
        d.log_threshold.copy_(torch.linspace(-3, 0, D_SAE))
    x = torch.randn(40, D_IN)
    out = d(x)
    below = out.pre_acts <= d.threshold
    assert (out.feature_acts[below] == 0).all()
    assert torch.equal(out.feature_acts[~below], out.pre_acts[~below])
    assert below.any() and (~below).any()


def test_jumprelu_straight_through_threshold_gradients():
    eps = 0.1
    theta = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    pre = torch.tensor([[1.02, 0.97, 3.0]])  # latent 0 just above, 1 just below (both in the window), 2 far
    # L0 via the step estimator: raising the threshold lowers L0 -> gradient -(1/eps) per row in the window
    step(pre, theta, eps).sum().backward()
    assert torch.allclose(theta.grad, torch.tensor([-1 / eps, -1 / eps, 0.0]))
    theta.grad = None
    # activation: d/dtheta = -(theta/eps) K(...) * upstream
    jumprelu(pre, theta, eps).sum().backward()
    assert torch.allclose(theta.grad, torch.tensor([-1 / eps, -1 / eps, 0.0]))
    # input gradient is the plain mask (no estimator on the input side)
    p = pre.clone().requires_grad_(True)
    jumprelu(p, theta.detach(), eps).sum().backward()
    assert torch.equal(p.grad, torch.tensor([[1.0, 0.0, 1.0]]))


def test_jumprelu_threshold_gradient_signs_in_model():
    d = make("jumprelu", bandwidth=0.5)
    x = torch.randn(64, D_IN)
    with torch.no_grad():
        pre = d.pre_acts(x)
        d.log_threshold.copy_(pre.abs().median(0).values.clamp_min(1e-3).log())
    # the L0 penalty always wants higher thresholds: its gradient on log_threshold is <= 0, and < 0 somewhere
    d.loss_terms(x)["l0_ste"].backward()
    assert (d.log_threshold.grad <= 0).all() and (d.log_threshold.grad < 0).any()


def test_jumprelu_mse_threshold_gradient_exact():
    # one latent that reconstructs half of the input: removing it (raising theta) would increase the error,
    # so dL/dtheta must be positive: -(theta/eps) * K * dL/df = -(0.95/0.2) * 1 * (-2) = 9.5
    d = D.create("jumprelu", d_in=2, d_sae=1, apply_b_dec_to_input=False, bandwidth=0.2)
    with torch.no_grad():
        d.W_enc.copy_(torch.tensor([[0.5], [0.0]]))
        d.W_dec.copy_(torch.tensor([[1.0, 0.0]]))
        d.log_threshold.fill_(torch.tensor(0.95).log())
    x = torch.tensor([[2.0, 0.0]])
    d.loss_terms(x)["mse"].backward()
    theta = d.threshold.detach()
    assert torch.allclose(d.log_threshold.grad, 9.5 * theta, rtol=1e-5)  # chain rule through exp


def test_gated_weight_sharing_and_losses():
    d = make("gated")
    x = torch.randn(12, D_IN)
    with torch.no_grad():
        d.r_mag.fill_(0.5)
        d.b_gate.normal_()
        d.b_mag.normal_()
    xc = x - d.b_dec
    gate = xc @ d.W_enc + d.b_gate
    mag = xc @ (d.W_enc * d.r_mag.exp()) + d.b_mag
    assert torch.allclose(d.encode(x), (gate > 0) * mag.relu())
    assert "b_enc" not in dict(d.named_parameters())
    terms = d.loss_terms(x)
    assert torch.allclose(terms["l1"], gate.relu().sum(-1).mean())
    assert torch.allclose(terms["aux_recon"], (gate.relu() @ d.W_dec + d.b_dec - x).pow(2).sum(-1).mean())
    d.zero_grad()
    terms["aux_recon"].backward()
    assert d.W_dec.grad is None or d.W_dec.grad.abs().sum() == 0  # decoder detached in the aux path
    assert d.b_gate.grad.abs().sum() > 0


def test_skip_transcoder_adds_linear_path():
    d = make("skip_transcoder")
    x = torch.randn(4, D_IN)
    with torch.no_grad():
        d.W_skip.normal_()
    f = d.encode(x)
    assert torch.allclose(d(x).reconstruction, f @ d.W_dec + d.b_dec + x @ d.W_skip.T, atol=1e-5)
    with pytest.raises(D.DictionaryConfigError, match="skip connection"):
        d.decode(f)
    with pytest.raises(D.DictionaryConfigError, match="target"):
        d.loss_terms(x)


def test_crosscoder_reads_and_writes_every_layer():
    d = make("crosscoder")
    x = torch.randn(5, 3, D_IN)
    pre = sum(x[:, layer] @ d.W_enc[layer] for layer in range(3)) + d.b_enc
    f = d.encode(x)
    assert torch.allclose(f, pre.relu(), atol=1e-5)
    recon = d.decode(f)
    for layer in range(3):
        assert torch.allclose(recon[:, layer], f @ d.W_dec[:, layer] + d.b_dec[layer], atol=1e-5)
    assert torch.allclose(d.loss_terms(x)["l1"], (f * d.W_dec.norm(dim=-1).sum(-1)).sum(-1).mean(), rtol=1e-5)
    with pytest.raises(D.DictionaryShapeError, match="n_layers, d_in"):
        d.check_compatible((5, 2, D_IN))


def test_clt_is_causal_and_layerwise_decode_matches():
    d = make("clt")
    with torch.no_grad():
        d.W_dec.normal_()  # fill even the masked (acausal) blocks: they must not matter
    x = torch.randn(4, 3, D_IN)
    out = d(x)
    for m in range(3):
        expected = sum(out.feature_acts[:, src] @ d.W_dec[src, :, m] for src in range(m + 1)) + d.b_dec[m]
        assert torch.allclose(out.reconstruction[:, m], expected, atol=1e-4)
        feats = [d.encode_layer(x[:, s], s) for s in range(m + 1)]
        assert torch.allclose(feats[-1], out.feature_acts[:, m], atol=1e-6)
        assert torch.allclose(d.decode_layer(feats, m), out.reconstruction[:, m], atol=1e-4)
    # changing a later layer's input leaves earlier outputs unchanged
    x2 = x.clone()
    x2[:, 2] += 1.0
    assert torch.allclose(d(x2).reconstruction[:, :2], out.reconstruction[:, :2])


def test_clt_jumprelu_threshold_has_gradient():
    d = make("clt", activation="jumprelu", bandwidth=1.0)
    x = torch.randn(8, 3, D_IN)
    terms = d.loss_terms(x, target=torch.randn(8, 3, D_IN))
    terms["l0_ste"].backward()
    assert (d.log_threshold.grad <= 0).all() and (d.log_threshold.grad < 0).any()


def test_create_errors_list_valid_names():
    with pytest.raises(D.UnknownArchitectureError) as err:
        D.create("topkk", d_in=4, d_sae=8)
    msg = str(err.value)
    assert "'topk'" in msg and all(name in msg for name in ("relu", "jumprelu", "gated", "clt", "crosscoder"))
    with pytest.raises(D.DictionaryConfigError, match="unknown option"):
        D.create("relu", d_in=4, d_sae=8, k=3)
    with pytest.raises(D.DictionaryConfigError, match="d_sae"):
        D.create("relu", d_in=4, d_sae=0)
    with pytest.raises(D.DictionaryConfigError, match="exceeds"):
        D.create("topk", d_in=4, d_sae=8, k=9)
    with pytest.raises(D.DictionaryConfigError, match="d_out"):
        D.create("relu", d_in=4, d_sae=8, d_out=5)
    with pytest.raises(D.DictionaryConfigError, match="activation"):
        D.create("transcoder", d_in=4, d_sae=8, activation="gated")
    assert set(D.names()) >= {"relu", "topk", "batchtopk", "jumprelu", "gated", "transcoder", "skip_transcoder",
                              "crosscoder", "clt"}


def test_check_compatible_refuses_other_width_and_hook():
    d = make("relu", hook_name="blocks.6.hook_resid_post", model_name="gpt2")
    assert d.hook_name == "blocks.6.resid_post"  # TransformerLens name converted
    d.check_compatible(D_IN, "blocks.6.resid_post")
    d.check_compatible(torch.Size([2, 3, D_IN]))
    with pytest.raises(D.DictionaryShapeError, match=f"d_in={D_IN}.*width 16"):
        d.check_compatible(16, "blocks.6.resid_post")
    with pytest.raises(D.DictionaryShapeError, match="blocks.6.resid_post"):
        d.check_compatible(D_IN, "blocks.7.resid_post")


def test_activation_norm_is_part_of_the_model_and_folds_exactly():
    d = make("jumprelu")
    x = torch.randn(10, D_IN) * 7
    scale = D.norm_scale(x)
    assert abs(scale - D_IN**0.5 / x.norm(dim=-1).mean()) < 1e-5
    d.set_activation_norm(scale)
    pre = (x * scale - d.b_dec) @ d.W_enc + d.b_enc
    assert torch.allclose(d.pre_acts(x), pre, atol=1e-5)
    out = d(x)
    assert torch.allclose(out.reconstruction, (out.feature_acts @ d.W_dec + d.b_dec) / scale, atol=1e-5)
    d.fold_activation_norm()
    assert d.norm_scale_in is None
    folded = d(x)
    assert torch.allclose(folded.reconstruction, out.reconstruction, atol=1e-4)
    assert torch.allclose(folded.feature_acts, out.feature_acts, atol=1e-4)
