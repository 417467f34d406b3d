"""The per-family proof of issue 13, on every tiny family: padded parity, documented shapes, ablation equals
editing HF's weights, in-place edits behave as documented at every hook kind."""

import pytest
import torch
from torch import nn

from mechscope.models.hooked import io_weight

ATOL = 1e-5


def test_padded_batch_logits_equal_hf(tiny):
    batch = tiny.tokenize(["ab", "hello world", "x"])
    assert batch.attention_mask is not None
    ref = tiny.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    out = tiny(batch)
    real = batch.attention_mask.bool()
    assert (out - ref)[real].abs().max() <= ATOL
    assert (out - ref).abs().max() <= ATOL  # the padded positions too: the same call as plain HF


def _expected_shape(model, kind, layer, b, t):
    c = model.cfg
    d_mlp = io_weight(model._block_module(layer, "mlp.post")).shape[0] if kind == "mlp.post" else None
    return {
        "embed": (b, t, c.d_model), "final_norm": (b, t, c.d_model), "logits": (b, t, c.d_vocab),
        "resid_pre": (b, t, c.d_model), "resid_mid": (b, t, c.d_model), "resid_post": (b, t, c.d_model),
        "attn_in": (b, t, c.d_model), "attn_out": (b, t, c.d_model), "mlp_in": (b, t, c.d_model),
        "mlp_out": (b, t, c.d_model), "attn.q": (b, t, c.n_heads, c.d_head), "attn.z": (b, t, c.n_heads, c.d_head),
        "attn.k": (b, t, c.n_kv_heads, c.d_head), "attn.v": (b, t, c.n_kv_heads, c.d_head),
        "attn.pattern": (b, c.n_heads, t, t), "mlp.post": (b, t, d_mlp),
        "mlp.router_logits": (b, t, c.n_experts), "mlp.router_weights": (b, t, c.n_experts),
        "mlp.expert_out": (b, t, c.n_experts, c.d_model),
    }[kind]


def test_every_hook_point_is_cached_with_its_documented_shape(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens, stop_early=False)
    assert set(cache) == set(tiny.hook_names())
    for name in tiny.hook_names():
        point = tiny.resolve(name)
        if point.kind == "pos_embed":  # (1 or batch) pos d_model: positions shared by the batch broadcast
            assert cache[name].shape[1:] == (12, tiny.cfg.d_model) and cache[name].shape[0] in (1, 2)
            continue
        assert tuple(cache[name].shape) == _expected_shape(tiny, point.kind, point.layer, 2, 12), name


def _zero_inputs(module: nn.Module, cols: slice) -> None:
    """Zero the weights that read input features ``cols`` of a Linear / Conv1D / experts down projection."""
    with torch.no_grad():
        if type(module).__name__ == "Conv1D":
            module.weight[cols, :] = 0
        else:
            module.weight[:, cols] = 0


def test_zero_ablation_equals_editing_hf_weights(family, tokens):
    from tiny import hooked

    model, edited = hooked(family), hooked(family)
    c = model.cfg
    # one head of attn.z == that head's columns of the output projection
    def kill_head(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    ablated = model.run_with_hooks(tokens, [("blocks.0.attn.z", kill_head)])
    _zero_inputs(edited._block_module(0, "attn.z"), slice(c.d_head, 2 * c.d_head))
    assert (ablated - edited(tokens)).abs().max() <= ATOL
    assert (ablated - model(tokens)).abs().max() > 1e-4

    # the whole attention output == output projection weight and bias
    model, edited = hooked(family), hooked(family)
    ablated = model.run_with_hooks(tokens, [("blocks.0.attn_out", lambda a, h: torch.zeros_like(a))])
    o_proj = edited._block_module(0, "attn.z")
    with torch.no_grad():
        o_proj.weight.zero_()
        if o_proj.bias is not None:
            o_proj.bias.zero_()
    assert (ablated - edited(tokens)).abs().max() <= ATOL

    # an MLP neuron (dense blocks) or an expert (MoE blocks) == the weights that read it
    model, edited = hooked(family), hooked(family)
    kinds = model.namespace.layer_kinds[0]
    if "mlp.post" in kinds:
        def kill_neuron(a, hook):
            a = a.clone()
            a[..., 3] = 0
            return a

        ablated = model.run_with_hooks(tokens, [("blocks.0.mlp.post", kill_neuron)])
        _zero_inputs(edited._block_module(0, "mlp.post"), slice(3, 4))
    else:
        assert "mlp.expert_out" in kinds

        def kill_expert(a, hook):
            a = a.clone()
            a[:, :, 1] = 0
            return a

        ablated = model.run_with_hooks(tokens, [("blocks.0.mlp.expert_out", kill_expert)])
        with torch.no_grad():
            edited._block_module(0, "mlp.expert_out").down_proj[1].zero_()
    assert (ablated - edited(tokens)).abs().max() <= ATOL
    assert (ablated - model(tokens)).abs().max() > 1e-5


def _perturb(act: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(act.shape, generator=g).to(act.dtype)


def test_in_place_edit_returning_none_counts_as_returning_it_at_every_hook_kind(tiny, tokens):
    """The documented rule: an in-place edit of ``act`` that returns None is the same as returning ``act``."""
    names = [n for n in tiny.hook_names() if tiny.resolve(n).layer in (None, 0)]
    for name in names:
        returned = tiny.run_with_hooks(tokens, [(name, lambda a, h: a * 0.5 + _perturb(a))])

        def in_place(a, h):
            a.mul_(0.5).add_(_perturb(a))

        edited = tiny.run_with_hooks(tokens, [(name, in_place)])
        assert (edited - returned).abs().max() <= ATOL, name
        assert (edited - tiny(tokens)).abs().max() > 1e-6, name


def test_in_place_edit_of_a_shared_input_reaches_only_that_module(tiny, tokens):
    """Parallel blocks feed one normalised tensor to attention and MLP: editing attn_in leaves mlp_in alone."""
    seen = {}
    with tiny.hooks([("blocks.0.attn_in", lambda a, h: a.zero_()),
                     ("blocks.0.mlp_in", lambda a, h: seen.setdefault("mlp_in", a.clone()))]):
        tiny(tokens)
    _, cache = tiny.run_with_cache(tokens, names=["blocks.0.mlp_in"])
    if tiny.cfg.parallel_residual:
        assert torch.equal(seen["mlp_in"], cache["blocks.0.mlp_in"])
    assert seen["mlp_in"].abs().max() > 0


def test_resid_mid_absent_exactly_for_parallel_blocks(tiny):
    has_mid = "resid_mid" in tiny.namespace.block_kinds
    assert has_mid != tiny.cfg.parallel_residual
