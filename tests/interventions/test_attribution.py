"""Attribution patching: exact where the metric is linear in the activation, first-order correct elsewhere."""

import contextlib

import pytest
import torch

from mechscope.interventions import Cell, activation_patch, correlation, logit_diff
from mechscope.interventions.attribution import attribution_check, attribution_patch

ATOL = 2e-5



def post_norm(model) -> bool:
    """attn_out / mlp_out are a norm's output (Gemma 2/3, OLMo-2/3): what feeds that norm (z, mlp.post) reaches the
    residual nonlinearly."""
    return model.adapter.attn_out_norm is not None


@contextlib.contextmanager
def linear_head(model, corrupted, zero_last_mlp=False):
    """Freeze the final norm's scale at the corrupted run's: logits become affine in the last residual.

    The norm's input is read by a plain torch pre-hook (it sees the residual after any patch), and the canonical
    ``final_norm`` hook replaces the output with the linearised norm of that input.
    """
    n = model.cfg.n_layers
    _, cache = model.run_with_cache(corrupted, names=[f"blocks.{n - 1}.resid_post"])
    scale = cache.final_norm_scale()  # (B, T, 1)
    resid = {}

    def keep(module, args, kwargs):
        resid["x"] = args[0] if args else kwargs["hidden_states"]

    def linear(act, hook):
        x = resid["x"]
        s = scale.repeat(x.shape[0] // scale.shape[0], 1, 1)
        return (model.final_norm.apply_linear(x, s) + model.final_norm.bias_term()).to(act.dtype)

    handle = model.final_norm_module.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        hooks = [("final_norm", linear)]
        if zero_last_mlp:  # then the last attention layer feeds the logits linearly too
            hooks.append((f"blocks.{n - 1}.mlp_out", lambda act, hook: torch.zeros_like(act)))
        with model.hooks(hooks):
            yield
    finally:
        handle.remove()


@pytest.mark.parametrize("zero_mlp", [False, True])
def test_exact_where_the_model_is_linear(tiny, zero_mlp):
    """With the final norm's scale frozen, logits are affine in the last block's outputs (and, with the last MLP
    zeroed, in its attention: z per head, attn_out, resid_mid): attribution patching must equal real patching cell
    by cell. A gradient read at the wrong place, position or head fails this. Mixture-of-experts blocks have no
    mlp.post (documented); their per-expert outputs sum linearly into mlp_out and take its place."""
    g = torch.Generator().manual_seed(5)
    clean = torch.randint(0, 256, (2, 6), generator=g)
    corrupted = torch.randint(0, 256, (2, 6), generator=g)
    metric = logit_diff([3, 4], [7, 8])
    last = tiny.cfg.n_layers - 1
    normed = post_norm(tiny)
    if zero_mlp:
        kinds = ["attn_out"] + ([] if normed else ["attn.z"]) + ["resid_mid"]
    else:
        kinds = ["resid_post", "mlp_out"] + ([] if normed else ["mlp.post", "mlp.expert_out"])
        kinds += ["attn_out"] if tiny.cfg.parallel_residual else []
    names = [f"blocks.{last}.{k}" for k in kinds if f"blocks.{last}.{k}" in tiny.namespace]
    assert len(names) >= 2 + (not normed and not zero_mlp)  # e.g. a dense block's mlp.post, an MoE's expert_out
    with linear_head(tiny, corrupted, zero_last_mlp=zero_mlp):
        attr = attribution_patch(tiny, clean, corrupted, metric, names=names)
        with torch.no_grad():
            base = metric(tiny(corrupted)).mean()
        for name in names:
            kind = tiny.resolve(name).kind
            if kind == "attn.z":
                cells = [Cell(name, pos=p, head=h) for p in range(6) for h in range(tiny.cfg.n_heads)]
                est = attr.scores[name].flatten()
            else:
                cells = [Cell(name, pos=p) for p in range(6)]
                est = attr.scores[name]
            real = activation_patch(tiny, clean, corrupted, metric, cells) - base
            # The patches do something: ten times the absolute tolerance, so a missing gradient (estimate 0) or one
            # read at another cell fails by that much. Only the last position reaches the metric here. The smallest
            # such effect is SmolLM3's attn_out, 4.65e-4 (estimate within 2.6e-4 relative): its two prompts' answer
            # pairs (3 vs 7, 4 vs 8) nearly cancel in the mean for these weights. Not its no-RoPE last layer: with
            # RoPE there it is 1.9e-4, and over 30 random answer pairs the median is 0.097 either way (Llama 0.14).
            assert real.abs().max() > 10 * ATOL, name
            torch.testing.assert_close(est, real, atol=ATOL, rtol=1e-3, msg=name)


def test_first_order_at_every_hook_point(tiny):
    """Sources a small step away from the base activations: the patching effect is the gradient's dot product to
    first order at every point (q, k, v, pattern and resid_mid included), so estimates track real effects."""
    g = torch.Generator().manual_seed(2)
    corrupted = torch.randint(0, 256, (2, 6), generator=g)
    names = [n for n in tiny.hook_names() if n.startswith("blocks.")]
    _, cache = tiny.run_with_cache(corrupted, names=names)
    noise = {n: 1e-3 * torch.randn(cache[n].shape, generator=g) for n in names}
    # Routing weights are perturbed among the experts each token is sent to: turning on an expert the base run
    # does not compute has an effect no gradient of the base run can see.
    source = {n: cache[n] + (noise[n] * (cache[n] != 0) if n.endswith("router_weights") else noise[n]) for n in names}
    metric = logit_diff(3, 7)
    attr = attribution_patch(tiny, source, corrupted, metric, names=names)
    with torch.no_grad():
        base = metric(tiny(corrupted)).mean()
    real = activation_patch(tiny, source, corrupted, metric, [Cell(n) for n in names]) - base
    est = torch.stack([attr.scores[n].sum() for n in names])
    # Top-k routing is a step function: where a perturbation flips a token's choice of experts (a near tie in the
    # router), the effect jumps and no first-order estimate follows it. Those cells are left out; tiny random
    # routers are near uniform, so ties are common (12 of 43 cells flip for Qwen2-MoE, 4 of 30 for OLMoE), but
    # two thirds of the cells must remain.
    flipped = [i for i, n in enumerate(names) if _reroutes(tiny, corrupted, n, source[n])]
    assert len(flipped) <= len(names) // 3, [names[i] for i in flipped]
    kept = [i for i in range(len(names)) if i not in flipped]
    names, est, real = [names[i] for i in kept], est[kept], real[kept]
    assert correlation(est, real) > 0.99
    rel = (est - real).abs() / real.abs().clamp_min(1e-7)
    assert float(rel.median()) < 0.05, dict(zip(names, rel.tolist()))


def _reroutes(model, tokens, name, value) -> bool:
    """Whether replacing ``name`` by ``value`` changes which experts any token is routed to (False without MoE)."""
    routers = [n for n in model.hook_names() if n.endswith("mlp.router_weights")]
    if not routers:
        return False
    support = {}

    def record(act, hook):
        support.setdefault(hook.name, []).append(act != 0)

    with torch.no_grad():
        model.run_with_hooks(tokens, [(n, record) for n in routers])
        model.run_with_hooks(tokens, [(name, lambda act, hook: value.to(act.dtype))] + [(n, record) for n in routers])
    return any(not torch.equal(*support[n]) for n in routers)


def test_sweep_layout_and_check():
    from tiny import hooked

    model = hooked("llama")
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 256, (2, 5), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = (corrupted[:, 1] + 1) % 256
    check = attribution_check(model, clean, corrupted, logit_diff(3, 7))
    assert check.attribution.values.shape == check.patching.values.shape == (3, 5)
    # Layer 0, position 0 is upstream of nothing corrupted: both are exactly zero there.
    assert float(check.attribution.values[0, 0]) == 0.0
    assert abs(float(check.patching.values[0, 0])) < 1e-6
    a, p = check.attribution.values.flatten().double(), check.patching.values.flatten().double()
    assert check.correlation == pytest.approx(float(torch.corrcoef(torch.stack([a, p]))[0, 1]), abs=1e-9)
    # first-order attribution tracks real patching closely for a one-token corruption of this small model (0.996)
    assert check.correlation > 0.95
    assert torch.equal(a == 0, p.abs() < 1e-6)  # the same cells are untouched by the corruption in both
    heads = attribution_patch(model, clean, corrupted, logit_diff(3, 7), names=["blocks.0.attn.z", "blocks.1.attn.k"])
    assert heads.sweep("attn.z", axis="head", layers=[0]).values.shape == (1, 4)
    assert heads.sweep("attn.k", axis="head", layers=[1]).values.shape == (1, 2)
    with pytest.raises(KeyError, match="was not attributed"):
        heads.sweep("resid_pre")
