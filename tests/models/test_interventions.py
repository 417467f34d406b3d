"""Hooks change the computation exactly as asked, and are removed afterwards."""

import pytest
import torch

import mechscope as ms


def test_every_point_can_be_replaced_and_changes_the_output(tiny, tokens):
    ref = tiny(tokens)

    def perturb(act, hook):  # not a pure rescale: RMSNorm would undo that
        g = torch.Generator().manual_seed(0)
        return act * 0.5 + 0.1 * torch.randn(act.shape, generator=g)

    for name in tiny.hook_names():
        out = tiny.run_with_hooks(tokens, [(name, perturb)])
        assert (out - ref).abs().max() > 1e-4, f"replacing {name} had no effect"


def test_zero_ablating_mlp_out_equals_removing_it_from_the_residual(tiny, tokens):
    if tiny.cfg.parallel_residual:
        pytest.skip("checked through resid_mid, which parallel-residual models lack")
    _, cache = tiny.run_with_cache(tokens, names=["blocks.0.resid_mid"])
    seen = {}
    with tiny.hooks([("blocks.0.mlp_out", lambda act, hook: torch.zeros_like(act)),
                     ("blocks.0.resid_post", lambda act, hook: seen.setdefault("post", act))]):
        tiny(tokens)
    assert torch.equal(seen["post"], cache["resid_mid", 0])


def test_editing_resid_mid_is_editing_the_residual(tiny, tokens):
    if tiny.cfg.parallel_residual:
        pytest.skip("parallel residual: no resid_mid")
    delta = torch.randn(tiny.cfg.d_model) * 0.3
    via_mid = tiny.run_with_hooks(tokens, [("blocks.0.resid_mid", lambda a, h: a + delta)])
    via_attn = tiny.run_with_hooks(tokens, [("blocks.0.attn_out", lambda a, h: a + delta)])
    assert (via_mid - via_attn).abs().max() <= 1e-5
    assert (via_mid - tiny(tokens)).abs().max() > 1e-3


def test_scaling_q_equals_scaling_k(tiny, tokens):
    """Both scale the attention scores by the same factor, whatever the q/k layout."""
    if "norm" in tiny.layer_sites[0]["attn.q"].path:
        pytest.skip("q/k are read after q/k norms, and scaling before the rotary differs only in bits")
    a = tiny.run_with_hooks(tokens, [("blocks.0.attn.q", lambda x, h: x * 0.5)])
    b = tiny.run_with_hooks(tokens, [("blocks.0.attn.k", lambda x, h: x * 0.5)])
    assert (a - b).abs().max() <= 1e-5
    assert (a - tiny(tokens)).abs().max() > 1e-4


def test_patching_a_head_of_z_changes_only_through_that_head(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens, names=["blocks.0.attn.z", "blocks.0.attn_out"])

    def kill_head(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    seen = {}
    with tiny.hooks([("blocks.0.attn.z", kill_head), ("blocks.0.attn_out", lambda a, h: seen.setdefault("o", a))]):
        tiny(tokens)
    expected = cache["blocks.0.attn_out"] - cache.head_results(0)[:, :, 1]
    if tiny.attn_out_norm(0) is None:  # through Gemma's post-norm the removal is not additive
        assert (seen["o"] - expected).abs().max() <= 1e-5


def test_pattern_replacement_flows_into_z(tiny, tokens):
    if "attn.pattern" not in tiny.namespace.block_kinds:
        pytest.skip("this variant has no attn.pattern (see its adapter)")
    uniform_z = {}

    def uniform(p, hook):
        mask = torch.tril(torch.ones(p.shape[-2:], dtype=p.dtype))
        return (mask / mask.sum(-1, keepdim=True)).expand_as(p).contiguous()

    with tiny.hooks([("blocks.0.attn.pattern", uniform), ("blocks.0.attn.z", lambda z, h: uniform_z.setdefault("z", z))]):
        tiny(tokens)
    _, cache = tiny.run_with_cache(tokens, names=["blocks.0.attn.v"])
    v = cache["blocks.0.attn.v"].repeat_interleave(tiny.cfg.n_heads // tiny.cfg.n_kv_heads, dim=2)  # (B,T,H,Dh)
    expected = v.cumsum(1) / torch.arange(1, 13).view(1, -1, 1, 1)
    if tiny.cfg.model_type in ("gemma2", "gemma3_text"):
        pytest.skip("sliding-window layers would need the windowed mask")
    assert (uniform_z["z"] - expected).abs().max() <= 1e-5


def test_hooks_are_removed_after_an_exception(tiny, tokens):
    def boom(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pattern = [("blocks.0.attn.pattern", lambda a, h: None)] if "attn.pattern" in tiny.namespace.block_kinds else []
        with tiny.hooks([("blocks.0.resid_post", boom), *pattern]):
            tiny(tokens)
    leftover = [m for m in tiny.hf.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert leftover == []
    assert tiny.hf.config._attn_implementation == tiny._default_attn
    assert torch.equal(tiny(tokens), tiny.hf(tokens).logits)


def test_early_stop_runs_only_the_needed_layers(tiny, tokens):
    calls = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, b in enumerate(tiny.blocks)]
    try:
        logits, cache = tiny.run_with_cache(tokens, names=["blocks.0.resid_post"])
        assert logits is None and list(cache) == ["blocks.0.resid_post"] and calls == [0]
        calls.clear()
        logits, cache = tiny.run_with_cache(tokens, names=["blocks.0.resid_post", "logits"])
        assert logits is not None and len(calls) == tiny.cfg.n_layers
        calls.clear()
        logits, cache = tiny.run_with_cache(tokens, names=lambda n: n.startswith("blocks.0."), stop_at_layer=1)
        assert calls == [0] and logits is None
    finally:
        for h in handles:
            h.remove()


def test_batched_padding_gives_the_unbatched_numbers(tiny):
    short, long = "ab", "hello world"
    batch = tiny.tokenize([short, long])
    assert batch.attention_mask is not None and batch.attention_mask[0].sum() == 2
    logits = tiny(batch)
    alone = tiny(short)
    assert (logits[0, :2] - alone[0]).abs().max() <= 1e-5
    assert (logits[1] - tiny(long)[0]).abs().max() <= 1e-5


def test_generate_uses_hooks_at_every_step(tiny):
    ids = tiny.to_tokens("hello")
    ref = tiny.hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                           do_sample=False, pad_token_id=258)
    text = tiny.generate("hello", max_new_tokens=6)
    assert text == tiny.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    steps = []
    z = tiny.to_single_token("z")

    def force_z(logits, hook):
        forced = torch.full_like(logits, -100.0)
        forced[..., z] = 100.0
        return forced

    forced = tiny.generate("hello", max_new_tokens=4, fwd_hooks=[
        ("blocks.0.resid_post", lambda a, h: steps.append(a.shape[1])), ("logits", force_z)])
    assert steps == [ids.shape[1], 1, 1, 1]  # the prompt, then one position per new token (KV cache)
    assert forced == "zzzz"


def test_tl_aliases_and_tuple_indexing(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens, names=["blocks.1.hook_resid_post", "hook_embed"])
    assert cache["resid_post", 1] is cache["blocks.1.resid_post"]
    assert cache["blocks.1.hook_resid_post"] is cache["resid_post", 1]
    assert cache["hook_embed"] is cache["embed"]
    half = cache.to(dtype=torch.float16)
    assert half["embed"].dtype == torch.float16 and cache["embed"].dtype == torch.float32
    stacked = tiny.run_with_cache(tokens, names=lambda n: n.endswith("resid_post"))[1].stack("resid_post")
    assert stacked.shape == (tiny.cfg.n_layers, 2, 12, tiny.cfg.d_model)


def test_grad_mode_keeps_the_graph(tiny, tokens):
    logits, cache = tiny.run_with_cache(tokens, names=["blocks.0.resid_post", "logits"], grad=True)
    logits[0, -1, 0].backward()
    assert cache["blocks.0.resid_post"].requires_grad
    assert next(tiny.parameters()).grad is not None
    tiny.hf.zero_grad(set_to_none=True)
