"""Ablation hooks (zero / mean / resample) and path patching on tiny random models."""

import pytest
import torch

from mechscope.interventions import Cell, activation_patch, logit_diff
from mechscope.interventions.ablation import ablate, ablate_heads, ablate_mlp, ablate_neurons
from mechscope.interventions.path_patching import path_patch, path_patch_heads


@pytest.fixture
def model():
    from tiny import hooked

    return hooked("llama")


@pytest.fixture
def ids():
    return torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(4))


def observed(model, ids, hooks, name):
    with model.hooks(hooks):
        _, cache = model.run_with_cache(ids, names=[name])
    return cache[name]


def test_zero_ablation_of_all_heads_equals_zero_attention_output(model, ids):
    with torch.no_grad():
        a = model.run_with_hooks(ids, ablate_heads(model, 1))  # llama has no o_proj bias
        b = model.run_with_hooks(ids, [("blocks.1.attn_out", lambda act, hook: torch.zeros_like(act))])
        c = model(ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (a - c).abs().max() > 1e-3


def test_zero_ablation_touches_only_the_selected_slice(model, ids):
    z = observed(model, ids, ablate_heads(model, 0, heads=[1, 3], positions=[2, 5]), "blocks.0.attn.z")
    clean = observed(model, ids, [], "blocks.0.attn.z")
    mask = torch.zeros_like(clean, dtype=torch.bool)
    for pos in (2, 5):
        mask[:, pos, [1, 3]] = True
    assert (z[mask] == 0).all()
    torch.testing.assert_close(z[~mask], clean[~mask])


def test_mean_ablation_uses_the_reference_mean(model, ids):
    ref = torch.randint(0, 256, (5, 10), generator=torch.Generator().manual_seed(9))
    post = observed(model, ids, ablate_neurons(model, 1, [3, 7], how="mean", reference=ref), "blocks.1.mlp.post")
    ref_post = observed(model, ref, [], "blocks.1.mlp.post")
    want = ref_post[..., [3, 7]].mean((0, 1))
    torch.testing.assert_close(post[..., [3, 7]], want.expand(3, 8, 2))
    clean = observed(model, ids, [], "blocks.1.mlp.post")
    torch.testing.assert_close(post[..., 0], clean[..., 0])
    per_pos = observed(model, ids, ablate_mlp(model, 0, "mean", reference=ref, per_position=True), "blocks.0.mlp_out")
    ref_out = observed(model, ref, [], "blocks.0.mlp_out")
    torch.testing.assert_close(per_pos, ref_out.mean(0)[:8].expand(3, 8, -1))


def test_resample_ablation_takes_reference_rows(model, ids):
    ref = torch.randint(0, 256, (4, 8), generator=torch.Generator().manual_seed(2))
    out = observed(model, ids, ablate(model, "blocks.1.resid_pre", "resample", reference=ref, seed=3), "blocks.1.resid_pre")
    ref_acts = observed(model, ref, [], "blocks.1.resid_pre")
    for row in out:
        assert any(torch.allclose(row, r, atol=1e-6) for r in ref_acts)


def test_ablation_errors(model):
    with pytest.raises(ValueError, match="needs reference"):
        ablate_mlp(model, 0, "mean")
    with pytest.raises(ValueError, match="how must be"):
        ablate_mlp(model, 0, "half")
    with pytest.raises(ValueError, match="head 9 is out of range.*has 4"):
        model.run_with_hooks("abc", ablate_heads(model, 0, heads=[9]))
    with pytest.raises(ValueError, match="heads= needs a per-head point"):
        model.run_with_hooks("abc", ablate(model, "blocks.0.mlp_out", heads=[0]))
    with pytest.raises(ValueError, match="at least as long"):
        model.run_with_hooks("abcdefgh", ablate_mlp(model, 0, "resample", reference="ab"))


def test_path_patching_direct_effect_through_the_final_residual(model):
    """Sender head L0H1, receiver the final residual: the result is the base run plus exactly the head's direct
    contribution change, which we compute by hand from z and W_O."""
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 256, (2, 6), generator=g)
    corrupted = torch.randint(0, 256, (2, 6), generator=g)
    metric = logit_diff(3, 7)
    last = f"blocks.{model.cfg.n_layers - 1}.resid_post"
    got = path_patch(model, clean, corrupted, metric, [Cell("blocks.0.attn.z", head=1)], [Cell(last)])
    _, cc = model.run_with_cache(clean, names=["blocks.0.attn.z"])
    _, rc = model.run_with_cache(corrupted, names=["blocks.0.attn.z"])
    delta = cc.head_results(0)[:, :, 1] - rc.head_results(0)[:, :, 1]  # (B, T, D)
    with torch.no_grad():
        want = metric(model.run_with_hooks(corrupted, [(last, lambda act, hook: act + delta)])).mean()
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)
    # A sender after the receiver cannot reach it: no change from the corrupted run.
    res = path_patch_heads(model, clean, corrupted, metric, receivers=[Cell("blocks.1.attn.q", head=0)], layers=[1, 2])
    torch.testing.assert_close(res.values, torch.full((2, 4), res.corrupted), atol=1e-6, rtol=1e-6)
    # Earlier heads do reach it, and batching matches one sender at a time.
    res0 = path_patch_heads(model, clean, corrupted, metric, receivers=[Cell("blocks.1.attn.q", head=0)])
    assert res0.values.shape == (1, 4) and (res0.values - res0.corrupted).abs().max() > 1e-5
    one = path_patch(model, clean, corrupted, metric, [Cell("blocks.0.attn.z", head=2)],
                     [Cell("blocks.1.attn.q", head=0)], batch_size=2)
    torch.testing.assert_close(one[0], res0.values[0, 2], atol=1e-6, rtol=1e-5)


def test_path_patching_errors(model):
    with pytest.raises(ValueError, match="sender"):
        path_patch(model, "ab", "cd", logit_diff(1, 2), [Cell("blocks.0.resid_pre")], [Cell("final_norm")])
    with pytest.raises(ValueError, match="receiver"):
        path_patch(model, "ab", "cd", logit_diff(1, 2), [Cell("blocks.0.attn.z", head=0)], [Cell("blocks.1.mlp_out")])
