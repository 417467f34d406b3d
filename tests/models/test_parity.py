"""Hooked outputs equal plain HF outputs; caches equal HF hidden states; decompositions add up."""

import pytest
import torch

from tiny import hf_model

ATOL = 1e-5


def test_pass_through_hooks_on_every_point_leave_logits_identical(tiny, tokens):
    ref = tiny.hf(tokens).logits
    names = [n for n in tiny.hook_names() if not n.endswith("attn.pattern")]
    out = tiny.run_with_hooks(tokens, [(n, lambda act, hook: act.clone()) for n in names])
    assert torch.equal(out, ref)  # no pattern hook: the fast attention path and the same bits


def _with_pattern(model):
    if "attn.pattern" not in model.namespace.block_kinds:
        pytest.skip("this variant has no attn.pattern (see its adapter)")
    return model


def test_pattern_hooks_match_hf_eager_attention(family, tokens):
    eager = hf_model(family, attn="eager")
    import mechscope as ms
    model = _with_pattern(ms.HookedModel(eager, None))
    ref = eager(tokens).logits
    out = model.run_with_hooks(tokens, [(lambda n: True, lambda act, hook: act.clone())])
    assert (out - ref).abs().max() <= ATOL
    # and against the default (SDPA) model the difference stays within float tolerance
    sdpa = hf_model(family)
    assert (out - sdpa(tokens).logits).abs().max() <= ATOL


def test_cached_residuals_equal_hf_hidden_states(tiny, tokens):
    logits, cache = tiny.run_with_cache(tokens, stop_early=False)
    hf = tiny.hf(tokens, output_hidden_states=True)
    assert (logits - hf.logits).abs().max() <= ATOL
    for layer in range(tiny.cfg.n_layers):
        assert (cache["resid_pre", layer] - hf.hidden_states[layer]).abs().max() <= ATOL
    # HF's last hidden state is after the final norm
    assert (cache["final_norm"] - hf.hidden_states[-1]).abs().max() <= ATOL
    assert (cache["resid_post", tiny.cfg.n_layers - 2] - hf.hidden_states[-2]).abs().max() <= ATOL


def test_pattern_equals_hf_attentions_and_rows_sum_to_one(family, tokens):
    eager = hf_model(family, attn="eager")
    import mechscope as ms
    model = _with_pattern(ms.HookedModel(eager, None))
    _, cache = model.run_with_cache(tokens, names=lambda n: n.endswith("pattern"), stop_early=False)
    attentions = eager(tokens, output_attentions=True).attentions
    for layer, ref in enumerate(attentions):
        pat = cache["pattern", layer]
        assert pat.shape == (2, model.cfg.n_heads, 12, 12)
        assert (pat - ref).abs().max() <= ATOL
        assert torch.allclose(pat.sum(-1), torch.ones(()), atol=1e-5)


def test_head_results_sum_to_attn_out(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens, stop_early=False)
    for layer in range(tiny.cfg.n_layers):
        heads = cache.head_results(layer)
        assert heads.shape == (2, 12, tiny.cfg.n_heads, tiny.cfg.d_model)
        total = heads.sum(2) + cache.attn_bias(layer)
        assert (total - cache["attn_out", layer]).abs().max() <= ATOL
        # each head really differs: the split is not a copy of attn_out / n_heads
        assert (heads[:, :, 0] - heads[:, :, 1]).abs().max() > 1e-3


def test_decompositions_add_up_through_the_final_norm(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens, stop_early=False)
    n = tiny.cfg.n_layers
    comps, labels = cache.decompose_resid()
    assert labels[0] == "embed" and labels[-1] == f"L{n - 1}_mlp"
    assert (comps.sum(0) - cache["resid_post", n - 1]).abs().max() <= ATOL
    heads, head_labels = cache.decompose_resid(layer=1, split_heads=True)
    assert (heads.sum(0) - cache["resid_pre", 1]).abs().max() <= ATOL
    assert "L0H3" in head_labels
    normed = cache.apply_final_norm(comps).sum(0) + tiny.final_norm.bias_term()
    assert (normed - cache["final_norm"]).abs().max() <= ATOL
    acc, acc_labels = cache.accumulated_resid()
    assert acc.shape[0] == n + 1 and acc_labels[-1] == "final_resid"
    assert torch.equal(acc[1], cache["resid_pre", 1])


def test_resid_mid_is_resid_pre_plus_attn_out(tiny, tokens):
    if tiny.cfg.parallel_residual:
        pytest.skip("parallel residual: no resid_mid")
    _, cache = tiny.run_with_cache(tokens, stop_early=False)
    for layer in range(tiny.cfg.n_layers):
        mid = cache["resid_pre", layer] + cache["attn_out", layer]
        assert torch.equal(cache["resid_mid", layer], mid)
        assert torch.equal(cache["resid_post", layer], mid + cache["mlp_out", layer])


def test_gqa_keys_and_values_keep_kv_heads(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens, names=["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v",
                                                  "blocks.0.attn.z"])
    c = tiny.cfg
    assert cache["blocks.0.attn.q"].shape == (2, 12, c.n_heads, c.d_head)
    assert cache["blocks.0.attn.k"].shape == (2, 12, c.n_kv_heads, c.d_head)
    assert cache["blocks.0.attn.v"].shape == (2, 12, c.n_kv_heads, c.d_head)
    assert cache["blocks.0.attn.z"].shape == (2, 12, c.n_heads, c.d_head)
