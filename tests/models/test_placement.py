"""In-memory models, models placed or offloaded by accelerate, and half precision."""

import pytest
import torch

import mechscope as ms
from mechscope.models.loading import ModelDtypeError, TokenizerRequiredError
from mechscope.models.offload import DeviceMapError
from tiny import byte_tokenizer, hf_model, save_model_dir

ATOL = 1e-5
# Half precision: hooks that only observe leave HF's computation untouched, so logits equal HF's in the same dtype
# bit for bit; derived quantities (decompositions summed in that dtype) agree within these tolerances.
HALF_ATOL = {torch.bfloat16: 5e-2, torch.float16: 5e-3}


# -- in-memory models -----------------------------------------------------------------------------------------
def test_load_model_accepts_an_hf_model_object_with_its_tokenizer(tokens):
    hf = hf_model("qwen2")
    model = ms.load_model(hf, tokenizer=byte_tokenizer())
    assert model.hf is hf and model.cfg.family == "llama"
    assert torch.equal(model(tokens), hf(tokens).logits)
    assert model.to_str_tokens("ab") == ["a", "b"]


def test_an_hf_model_object_without_its_tokenizer_is_refused():
    with pytest.raises(TokenizerRequiredError, match="without its tokenizer; pass tokenizer="):
        ms.load_model(hf_model("gpt2"))


def test_in_memory_model_dtype_conversion(tokens):
    hf = hf_model("llama")
    model = ms.load_model(hf, tokenizer=byte_tokenizer(), dtype="bf16")
    assert model.cfg.dtype == torch.bfloat16 and next(hf.parameters()).dtype == torch.bfloat16


# -- placement and offload ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("m") / "llama", "llama")


OFFLOAD_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
               "model.layers.1": "disk", "model.layers.2": "disk", "model.norm": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def offloaded(folder, tmp_path_factory):
    return ms.load_model(folder, device_map=OFFLOAD_MAP, offload_folder=tmp_path_factory.mktemp("offload"))


@pytest.fixture(scope="module")
def cpu_offloaded():
    """Every weight offloaded to CPU memory (meta parameters, loaded around each forward)."""
    from accelerate import cpu_offload

    hf = hf_model("llama")
    cpu_offload(hf, execution_device="cpu")
    assert next(hf.parameters()).device.type == "meta"
    return ms.load_model(hf, tokenizer=byte_tokenizer())


@pytest.fixture(scope="module")
def plain(folder):
    return ms.load_model(folder)


@pytest.mark.parametrize("which", ["offloaded", "cpu_offloaded"])
def test_offloaded_model_matches_the_plain_one(which, request, plain, tokens):
    model = request.getfixturevalue(which)
    assert (model(tokens) - plain(tokens)).abs().max() <= ATOL
    _, cache = model.run_with_cache(tokens, stop_early=False, device="cpu")
    _, ref = plain.run_with_cache(tokens, stop_early=False)
    for name in ref:
        assert (cache[name] - ref[name]).abs().max() <= ATOL, name
    # weights of offloaded layers are read through accelerate's weights map
    for layer in range(3):
        assert (model.W_O(layer) - plain.W_O(layer)).abs().max() == 0
        assert (cache.head_results(layer) - ref.head_results(layer)).abs().max() <= ATOL
    comps, _ = cache.decompose_resid()
    assert (cache.apply_final_norm(comps).sum(0) - ref["final_norm"]).abs().max() <= ATOL
    assert torch.equal(model.W_U, plain.W_U)


@pytest.mark.parametrize("which", ["offloaded", "cpu_offloaded"])
def test_patching_and_splicing_on_an_offloaded_model(which, request, plain, tokens):
    from mechscope.dictionaries import create
    from mechscope.interventions import patch_resid

    model = request.getfixturevalue(which)
    metric = lambda logits: logits[:, -1, 5] - logits[:, -1, 7]
    clean, corrupt = tokens[:1], tokens[1:]
    a = patch_resid(model, clean, corrupt, metric, layers=[0, 2])
    b = patch_resid(plain, clean, corrupt, metric, layers=[0, 2])
    assert torch.allclose(a.values, b.values, atol=1e-5)
    torch.manual_seed(0)
    sae = create("topk", d_in=32, d_sae=64, k=8, hook_name="blocks.1.resid_post")
    with model.spliced(sae, at="blocks.1.resid_post"):
        x = model(tokens)
    with plain.spliced(sae, at="blocks.1.resid_post"):
        y = plain(tokens)
    assert (x - y).abs().max() <= ATOL and (x - plain(tokens)).abs().max() > 1e-4


def test_offloaded_model_refuses_to_move(offloaded):
    with pytest.raises(ValueError, match="placed by accelerate"):
        offloaded.to("cpu")


@pytest.mark.parametrize("device_map,match", [
    ({"": "cuda:3"}, "names CUDA device 3, but this machine has"),
    ({"model.layers": 7}, "names CUDA device 7"),
    ({"": "tpu"}, "not a device name|not available"),
    ("cuda:1", "names CUDA device 1"),
    (42.0, "device_map must be"),
])
def test_device_map_naming_a_missing_device_is_refused(folder, device_map, match):
    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that many GPUs")
    with pytest.raises(DeviceMapError, match=match):
        ms.load_model(folder, device_map=device_map)


def test_max_memory_and_device_must_name_real_devices(folder):
    if torch.cuda.is_available():
        pytest.skip("checks a machine without CUDA")
    with pytest.raises(DeviceMapError, match="available here: cpu, disk"):
        ms.load_model(folder, device_map="auto", max_memory={0: "1GiB", "cpu": "1GiB"})
    with pytest.raises(DeviceMapError, match="CUDA device 0"):
        ms.load_model(folder, device="cuda")
    with pytest.raises(ValueError, match="either device= .* or device_map="):
        ms.load_model(folder, device="cpu", device_map="auto")


def test_device_map_auto_on_cpu_matches(folder, plain, tokens):
    model = ms.load_model(folder, device_map="auto")
    assert (model(tokens) - plain(tokens)).abs().max() <= ATOL


# -- half precision -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["bf16", "float16"])
def test_half_precision_load_and_cache_match_hf_in_the_same_dtype(folder, dtype, tokens):
    model = ms.load_model(folder, dtype=dtype)
    torch_dtype = model.cfg.dtype
    assert torch_dtype in HALF_ATOL
    ref = model.hf(tokens, output_hidden_states=True)
    logits, cache = model.run_with_cache(tokens, names=lambda n: "pattern" not in n, stop_early=False)
    assert torch.equal(logits, ref.logits)  # observing hooks: HF's bits in HF's dtype
    assert cache["blocks.1.resid_pre"].dtype == torch_dtype
    assert torch.equal(cache["blocks.1.resid_pre"], ref.hidden_states[1])
    tol = HALF_ATOL[torch_dtype]
    comps, _ = cache.decompose_resid()
    assert (comps.float().sum(0) - cache["blocks.2.resid_post"].float()).abs().max() <= tol
    heads = cache.head_results(0).float().sum(2) + cache.attn_bias(0)
    assert (heads - cache["blocks.0.attn_out"].float()).abs().max() <= tol
    # with pattern hooks the call runs HF's eager attention: within the dtype's tolerance of SDPA
    out = model.run_with_hooks(tokens, [("blocks.0.attn.pattern", lambda p, h: None)])
    assert (out.float() - ref.logits.float()).abs().max() <= tol * 4


def test_run_with_cache_dtype_takes_the_names_load_model_takes(tokens):
    model = ms.load_model(hf_model("gpt2"), tokenizer=byte_tokenizer())
    for name, dtype in [("float16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)]:
        _, cache = model.run_with_cache(tokens, names=["blocks.0.resid_post"], dtype=name)
        assert cache["blocks.0.resid_post"].dtype == dtype
    with pytest.raises(ValueError, match="unknown dtype 'float8'; use one of"):
        model.run_with_cache(tokens, names=["embed"], dtype="float8")
    with pytest.raises(ValueError, match="not one models run in"):
        ms.load_model(hf_model("gpt2"), tokenizer=byte_tokenizer(), dtype=torch.int8)


def test_a_dtype_the_model_cannot_run_in_is_a_clear_error(monkeypatch, tokens):
    """Simulated: the probe forward fails in the requested dtype."""
    hf = hf_model("llama")

    def broken(*args, **kwargs):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')

    monkeypatch.setattr(hf, "forward", broken)
    with pytest.raises(ModelDtypeError, match="cannot run in torch.float16 on cpu.*float32"):
        ms.load_model(hf, tokenizer=byte_tokenizer(), dtype="fp16")
