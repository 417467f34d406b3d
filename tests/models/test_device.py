"""Every family on a chosen device and dtype: parity with HF in that dtype, caches, decompositions.

By default this runs in bfloat16 on CPU. ``scripts/gpu_check.sh`` runs it on CUDA in float32 and bfloat16:

    MECHSCOPE_TEST_DEVICE=cuda MECHSCOPE_TEST_DTYPE=float32 pytest tests/models/test_device.py
"""

import os

import pytest
import torch

import mechscope as ms
from mechscope.models.config import parse_dtype
from tiny import byte_tokenizer, hf_model

DEVICE = os.environ.get("MECHSCOPE_TEST_DEVICE", "cpu")
DTYPE = parse_dtype(os.environ.get("MECHSCOPE_TEST_DTYPE", "bfloat16"))
# Observing hooks leave HF's computation bit-identical in any dtype; these bound what mechscope sums itself
# (decompositions, per-head results) and the eager-vs-SDPA difference of a call with a pattern hook.
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 5e-3}[DTYPE]

if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip(f"MECHSCOPE_TEST_DEVICE={DEVICE} but CUDA is not available", allow_module_level=True)


@pytest.fixture
def placed(family):
    hf = hf_model(family).to(device=DEVICE, dtype=DTYPE)
    return ms.load_model(hf, tokenizer=byte_tokenizer())


def test_logits_and_cache_equal_hf_in_the_same_dtype(placed):
    batch = placed.tokenize(["ab", "hello world", "x"])
    ref = placed.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    logits, cache = placed.run_with_cache(batch, names=lambda n: "pattern" not in n, stop_early=False)
    assert logits.dtype == DTYPE and logits.device.type == torch.device(DEVICE).type
    assert torch.equal(logits, ref.logits)
    assert torch.equal(cache["blocks.1.resid_pre"], ref.hidden_states[1])
    comps, _ = cache.decompose_resid()
    last = cache[f"blocks.{placed.cfg.n_layers - 1}.resid_post"]
    assert (comps.float().sum(0) - last.float()).abs().max() <= TOL * max(1.0, float(last.abs().max()))
    heads = cache.head_results(0).float().sum(2) + cache.attn_bias(0)
    assert (heads - cache["blocks.0.attn_out"].float()).abs().max() <= TOL * 10


def test_pattern_hooks_within_tolerance(placed, tokens):
    if "attn.pattern" not in placed.namespace.block_kinds:
        pytest.skip("no attn.pattern in this variant")
    tokens = tokens.to(DEVICE)
    ref = placed(tokens)
    _, cache = placed.run_with_cache(tokens, names=lambda n: n.endswith("pattern"), stop_early=False)
    out = placed.run_with_hooks(tokens, [(lambda n: n.endswith("pattern"), lambda p, h: None)])
    assert (out.float() - ref.float()).abs().max() <= TOL * 10
    assert torch.allclose(cache["pattern", 0].float().sum(-1), torch.ones(()), atol=TOL * 10)


def test_cache_moves_to_the_requested_device_and_dtype(placed, tokens):
    _, cache = placed.run_with_cache(tokens.to(DEVICE), names=["blocks.0.resid_post", "blocks.0.attn.z"],
                                     device="cpu", dtype="float32")
    assert cache["blocks.0.resid_post"].device.type == "cpu"
    assert cache["blocks.0.resid_post"].dtype == torch.float32
    assert cache.head_results(0).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device next to the CPU")
def test_layers_split_between_cuda_and_cpu_match(tokens):
    from accelerate import dispatch_model

    ref = ms.load_model(hf_model("llama").to(device="cuda", dtype=DTYPE), tokenizer=byte_tokenizer())
    split = dispatch_model(hf_model("llama").to(dtype=DTYPE), device_map={
        "model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0, "model.layers.1": "cpu",
        "model.layers.2": 0, "model.norm": "cpu", "lm_head": 0})
    model = ms.load_model(split, tokenizer=byte_tokenizer())
    tokens = tokens.to(model.cfg.device)
    assert (model(tokens).float().cpu() - ref(tokens.cuda()).float().cpu()).abs().max() <= TOL * 10
    _, cache = model.run_with_cache(tokens, stop_early=False, device="cpu")
    comps, _ = cache.decompose_resid()
    assert (comps.float().sum(0) - cache["blocks.2.resid_post"].float()).abs().max() <= TOL * 10
    assert cache.head_results(1).shape[-1] == model.cfg.d_model
    mid = model.run_with_hooks(tokens, [("blocks.1.resid_mid", lambda a, h: a * 0.5)])
    assert (mid.float() - model(tokens).float()).abs().max() > 1e-3
