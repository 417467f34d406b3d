"""Mixture-of-experts hook points: router logits and weights, each expert's output, and their interventions."""

import pytest
import torch

import mechscope as ms
from tiny import hooked

MOE = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
ATOL = 1e-5


@pytest.fixture(params=MOE)
def moe(request):
    return hooked(request.param)


def _gate(model, layer):
    return model.blocks[layer].mlp.gate


def test_router_points_match_hf_router(moe, tokens):
    _, cache = moe.run_with_cache(tokens, names=lambda n: n.startswith("blocks.0.mlp"))
    seen = {}
    handle = _gate(moe, 0).register_forward_hook(lambda m, a, o: seen.setdefault("out", o))
    try:
        moe(tokens)
    finally:
        handle.remove()
    logits, scores, index = seen["out"]
    e = moe.cfg.n_experts
    assert torch.equal(cache["blocks.0.mlp.router_logits"].reshape(-1, e), logits)
    dense = cache["blocks.0.mlp.router_weights"].reshape(-1, e)
    assert torch.equal(dense.gather(1, index), scores)
    assert ((dense != 0).sum(-1) == moe.cfg.experts_per_token).all()


def test_expert_outputs_sum_to_the_experts_part_of_mlp_out(moe, tokens):
    _, cache = moe.run_with_cache(tokens, names=lambda n: n.startswith("blocks.0.") and "mlp" in n)
    shares = cache["blocks.0.mlp.expert_out"]  # (B, T, E, D)
    routed = cache["blocks.0.mlp.router_weights"] != 0
    assert (shares.abs().amax(-1)[~routed] == 0).all() and (shares.abs().amax(-1)[routed] > 0).all()
    total = shares.sum(2)
    if moe.cfg.model_type == "qwen2_moe":  # plus the gated shared expert
        mlp = moe.blocks[0].mlp
        x = cache["blocks.0.mlp_in"]
        total = total + torch.sigmoid(mlp.shared_expert_gate(x)) * mlp.shared_expert(x)
    assert (total - cache["blocks.0.mlp_out"]).abs().max() <= ATOL


def test_mixed_dense_and_moe_layers_have_their_own_kinds():
    model = hooked("qwen2_moe")  # mlp_only_layers=[1]
    kinds = model.namespace.layer_kinds
    assert "mlp.expert_out" in kinds[0] and "mlp.post" not in kinds[0]
    assert "mlp.post" in kinds[1] and "mlp.router_logits" not in kinds[1]
    with pytest.raises(ms.HookNameError, match="block 1 has no mlp.expert_out .*only blocks 0, 2"):
        model.resolve("blocks.1.mlp.expert_out")
    with pytest.raises(ms.HookNameError, match="block 0 has no mlp.post"):
        model.resolve("blocks.0.mlp.post")


def test_router_weights_reroute(moe, tokens):
    """Sending every token to expert 0 alone equals zeroing all other experts' outputs... with weight 1."""
    e = moe.cfg.n_experts

    def only_expert_0(w, hook):
        new = torch.zeros_like(w)
        new[..., 0] = 1.0
        return new

    seen = {}
    out = moe.run_with_hooks(tokens, [("blocks.0.mlp.router_weights", only_expert_0),
                                      ("blocks.0.mlp.expert_out", lambda a, h: seen.setdefault("shares", a))])
    shares = seen["shares"]
    assert (shares[:, :, 1:] == 0).all() and (shares[:, :, 0].abs().amax(-1) > 0).all()
    # the expert-0 output with weight 1 is what the experts module computes for index 0, weight 1
    experts = moe.blocks[0].mlp.experts
    _, cache = moe.run_with_cache(tokens, names=["blocks.0.mlp_in"])
    x = cache["blocks.0.mlp_in"].reshape(-1, moe.cfg.d_model)
    ref = experts(x, torch.zeros(x.shape[0], 1, dtype=torch.long), torch.ones(x.shape[0], 1))
    assert (shares[:, :, 0].reshape(-1, moe.cfg.d_model) - ref).abs().max() <= ATOL
    assert (out - moe(tokens)).abs().max() > 1e-4
    assert e == 4


def test_router_logits_replacement_reroutes_through_hf_routing(moe, tokens):
    def favour_expert_3(logits, hook):
        logits = logits.clone()
        logits[..., 3] += 100.0
        return logits

    seen = {}
    moe.run_with_hooks(tokens, [("blocks.0.mlp.router_logits", favour_expert_3),
                                ("blocks.0.mlp.router_weights", lambda w, h: seen.setdefault("w", w))])
    assert (seen["w"][..., 3] > 0).all()


def test_transcoder_and_sae_train_on_the_moe_mlp(tmp_path):
    """Dictionaries read the MoE block's input and output like a dense MLP's."""
    from mechscope.activations.store import ActivationStore, StoreConfig
    from mechscope.training import DictionarySpec, LoopConfig, TrainConfig, train

    model = hooked("mixtral")
    contexts = lambda: iter([torch.randint(0, 256, (16,)) for _ in range(8)])
    store = ActivationStore.from_model(model, contexts, ["blocks.0.mlp_in", "blocks.0.mlp_out"],
                                       StoreConfig(batch_size=32))
    specs = [DictionarySpec("topk", hook="blocks.0.mlp_in", expansion=2, k=4),
             DictionarySpec("transcoder", hook="blocks.0.mlp_in", hook_out="blocks.0.mlp_out", expansion=2, k=4,
                            activation="topk")]
    run = train(store, specs, TrainConfig(loop=LoopConfig(steps=3)), out=tmp_path / "run")
    assert len(run.dictionaries) == 2
