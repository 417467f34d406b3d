"""Activation patching on tiny random models: exact recoveries, batching equivalence, errors."""

import pytest
import torch

from mechscope.interventions import (
    Cell,
    MetricShapeError,
    PatchInputError,
    activation_patch,
    logit_diff,
    patch_head_components,
    patch_heads,
    patch_resid,
    patch_sweep,
    prob,
)
from mechscope.interventions.metrics import kl_div, user_metric


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(0, 256, (2, 7), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(0, 256, (2,), generator=g)
    corrupted[:, 4] = torch.randint(0, 256, (2,), generator=g)
    return clean, corrupted


def test_full_residual_at_last_layer_recovers_clean_metric(tiny, pair):
    clean, corrupted = pair
    metric = logit_diff([5, 9], [11, 13])
    n = tiny.cfg.n_layers
    with torch.no_grad():
        want = metric(tiny(clean)).mean()
        corr = metric(tiny(corrupted)).mean()
    # The corruption moves the metric by ten times the tolerance recovery is checked at, so a patch that does
    # nothing fails by that much. (Tiny random models move it little: 2.4e-4 for Granite, whose logits HF divides
    # by logits_scaling=4, 5.9e-4 for Bloom; 1e-3 or more for the rest.)
    tol = 1e-5 + 1e-5 * abs(float(want))
    assert abs(float(want - corr)) > 10 * tol
    got = activation_patch(tiny, clean, corrupted, metric,
                           [Cell(f"blocks.{n - 1}.resid_post"), Cell("blocks.0.resid_pre"), Cell("final_norm")])
    torch.testing.assert_close(got, want.expand(3), atol=1e-5, rtol=1e-5)


def test_untouched_positions_do_nothing_and_batching_is_exact(tiny, pair):
    clean, corrupted = pair
    metric = logit_diff(5, 11)
    small = patch_resid(tiny, clean, corrupted, metric, batch_size=1)
    big = patch_resid(tiny, clean, corrupted, metric, batch_size=64)
    torch.testing.assert_close(small.values, big.values, atol=1e-5, rtol=1e-5)
    # Layer 0: only the corrupted positions can matter; patching one of them changes the metric.
    row0 = big.values[0]
    same = [p for p in range(7) if p not in (2, 4)]
    torch.testing.assert_close(row0[same], torch.full((5,), big.corrupted), atol=1e-5, rtol=1e-5)
    assert (row0[[2, 4]] - big.corrupted).abs().max() > 1e-4
    # Noising is the mirror image: patching corrupted activations into the clean run.
    noised = patch_resid(tiny, clean, corrupted, metric, direction="noise", layers=[0])
    torch.testing.assert_close(noised.values[0, same], torch.full((5,), noised.clean), atol=1e-5, rtol=1e-5)


def test_shared_prefix_matches_full_batches(tiny, pair):
    """Running the blocks before a batch's first patched layer once (then fanning out) changes nothing."""
    clean, corrupted = pair
    metric = logit_diff(5, 11)
    layers = list(range(1, tiny.cfg.n_layers))
    shared = patch_resid(tiny, clean, corrupted, metric, layers=layers, share_prefix=True)
    full = patch_resid(tiny, clean, corrupted, metric, layers=layers, share_prefix=False)
    torch.testing.assert_close(shared.values, full.values, atol=1e-5, rtol=1e-5)
    heads = patch_heads(tiny, clean, corrupted, metric, layers=layers, share_prefix=True)
    heads_full = patch_heads(tiny, clean, corrupted, metric, layers=layers, share_prefix=False)
    torch.testing.assert_close(heads.values, heads_full.values, atol=1e-5, rtol=1e-5)
    # Padded prompts (an attention mask and per-row positions) fan out too.
    cl, co = ["hello wor", "hi"], ["jello wor", "ho"]
    padded = patch_resid(tiny, cl, co, metric, layers=layers, share_prefix=True)
    padded_full = patch_resid(tiny, cl, co, metric, layers=layers, share_prefix=False)
    torch.testing.assert_close(padded.values, padded_full.values, atol=1e-5, rtol=1e-5)


def test_head_sweeps_match_single_cells(tiny, pair):
    clean, corrupted = pair
    metric = prob(7)
    res = patch_heads(tiny, clean, corrupted, metric, layers=[tiny.cfg.n_layers - 1])
    assert res.values.shape == (1, tiny.cfg.n_heads)
    cell = activation_patch(tiny, clean, corrupted, metric, [Cell(f"blocks.{tiny.cfg.n_layers - 1}.attn.z", head=1)])
    torch.testing.assert_close(res.values[0, 1], cell[0], atol=1e-6, rtol=1e-5)
    comps = patch_head_components(tiny, clean, corrupted, metric, layers=[0], pos=-1)
    assert comps["attn.k"].values.shape == (1, tiny.cfg.n_kv_heads)
    assert comps["attn.q"].values.shape == (1, tiny.cfg.n_heads)
    # Patching every head of z separately at the last layer: each differs from patching none.
    heads = activation_patch(tiny, clean, corrupted, metric, [Cell(f"blocks.{tiny.cfg.n_layers - 1}.attn.z", head=h)
                                                              for h in range(tiny.cfg.n_heads)])
    torch.testing.assert_close(heads, res.values[0], atol=1e-6, rtol=1e-5)


def test_result_labels_normalisation_and_plot(tmp_path, pair):
    from tiny import hooked

    model = hooked("llama")
    clean, corrupted = pair
    res = patch_resid(model, clean, corrupted, logit_diff(5, 11), layers=[0, 2])
    assert res.row_labels == ["L0", "L2"] and len(res.col_labels) == 7
    norm = res.normalized()
    full = activation_patch(model, clean, corrupted, logit_diff(5, 11), [Cell("blocks.0.resid_pre")])
    assert abs(float((full - res.corrupted) / (res.clean - res.corrupted)) - 1.0) < 1e-4
    assert torch.isfinite(norm).all()
    fig = res.plot(tmp_path / "r.png", normalized=True)
    assert (tmp_path / "r.png").stat().st_size > 1000 and fig.axes
    assert "| L0 |" in res.to_markdown()


def test_kl_and_user_metrics(pair):
    from tiny import hooked

    model = hooked("gpt2")
    clean, corrupted = pair
    with torch.no_grad():
        ref = model(clean)
    kl = kl_div(ref)
    res = activation_patch(model, clean, corrupted, kl,
                           [Cell("blocks.1.resid_post"), Cell("blocks.0.resid_pre", pos=0)])
    assert abs(float(res[0])) < 1e-5  # the clean distribution restored exactly
    with torch.no_grad():
        assert float(kl(model(corrupted)).mean()) > 1e-4
    um = user_metric(lambda logits: logits[:, -1, 3] * 2.0, "twice")
    res = activation_patch(model, clean, corrupted, um, [Cell("blocks.1.resid_post")])
    with torch.no_grad():
        torch.testing.assert_close(res[0], (model(clean)[:, -1, 3] * 2).mean())


def test_errors_name_what_is_valid(pair):
    from tiny import hooked

    model = hooked("llama")
    clean, corrupted = pair
    with pytest.raises(PatchInputError, match=r"shape \(2, 7\).*\(2, 6\)"):
        patch_resid(model, clean, corrupted[:, :6], logit_diff(5, 11))
    with pytest.raises(PatchInputError, match="matched token lengths"):
        patch_resid(model, ["ab", "abc"], ["ab", "abcd"], logit_diff(5, 11))
    with pytest.raises(MetricShapeError, match=r"returned shape \(2, 260\).*\(2,\)"):
        patch_resid(model, clean, corrupted, lambda logits: logits[:, -1])
    with pytest.raises(MetricShapeError, match="returned float"):
        patch_resid(model, clean, corrupted, lambda logits: 1.0)
    with pytest.raises(MetricShapeError, match="3 answer ids.*2 rows"):
        patch_resid(model, clean, corrupted, logit_diff([1, 2, 3], 4))
    with pytest.raises(ValueError, match="no head axis"):
        activation_patch(model, clean, corrupted, logit_diff(5, 11), [Cell("blocks.0.resid_pre", head=0)])
    with pytest.raises(ValueError, match="axis='head' needs a per-head"):
        patch_sweep(model, clean, corrupted, logit_diff(5, 11), kind="resid_pre", axis="head")
    with pytest.raises(KeyError, match="Did you mean"):
        patch_sweep(model, clean, corrupted, logit_diff(5, 11), kind="resid_psot")
    with pytest.raises(ValueError, match="out of range for 7 tokens"):
        activation_patch(model, clean, corrupted, logit_diff(5, 11), [Cell("blocks.0.resid_pre", pos=9)])
