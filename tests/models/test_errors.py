"""Bad input raises at once with a message naming what is valid."""

import pytest
import torch
import transformers

import mechscope as ms
from tiny import byte_tokenizer, hooked


@pytest.fixture(scope="module")
def llama():
    return hooked("llama")


def test_unknown_hook_name_suggests_close_names(llama):
    with pytest.raises(ms.HookNameError, match="Did you mean: .*blocks.1.resid_post"):
        llama.run_with_hooks("hi", [("blocks.1.resid_pots", lambda a, h: None)])


def test_layer_out_of_range(llama):
    with pytest.raises(ms.HookNameError, match=r"layers 0..2"):
        llama.run_with_cache("hi", names=["blocks.7.resid_post"])


def test_missing_kind_for_architecture():
    neox = hooked("neox")
    with pytest.raises(ms.HookNameError, match="does not exist for this architecture"):
        neox.resolve("blocks.0.resid_mid")


@pytest.mark.parametrize("prompt", ["", []])
def test_empty_prompt(llama, prompt):
    with pytest.raises(ValueError, match="empty|no prompts"):
        llama(prompt)


def test_prompt_longer_than_context(llama):
    with pytest.raises(ValueError, match="context is 64 tokens"):
        llama("x" * 65)
    with pytest.raises(ValueError, match="context"):
        llama(torch.zeros(1, 65, dtype=torch.long))


def test_token_ids_out_of_vocab(llama):
    with pytest.raises(ValueError, match="0..259"):
        llama(torch.tensor([[5, 999]]))


@pytest.mark.parametrize("bad,match", [
    (lambda a, h: a[:, :-1], "shape"),
    (lambda a, h: a.double(), "float64"),
    (lambda a, h: 3.0, "returned float"),
])
def test_hook_returning_the_wrong_thing(llama, bad, match):
    with pytest.raises(ms.HookReturnError, match=match):
        llama.run_with_hooks("hi", [("blocks.0.mlp_out", bad)])
    assert torch.equal(llama("hi"), llama.hf(llama.to_tokens("hi")).logits)  # hooks gone


def test_bad_hook_spec(llama):
    with pytest.raises(TypeError, match=r"\(name, fn\)"):
        llama.run_with_hooks("hi", ["blocks.0.mlp_out"])


def test_stop_at_layer_range(llama):
    with pytest.raises(ValueError, match="0..3"):
        llama.run_with_cache("hi", stop_at_layer=9)


def test_cache_names_what_it_holds(llama):
    _, cache = llama.run_with_cache("hi", names=["embed"])
    with pytest.raises(KeyError, match="was not cached; this cache holds: embed"):
        cache["resid_post", 0]


def test_to_single_token(llama):
    assert llama.to_single_token("a") == llama.tokenizer.convert_tokens_to_ids("a")
    with pytest.raises(ValueError, match="splits into 2 tokens"):
        llama.to_single_token("ab")


def test_unsupported_architecture_names_the_supported_ones():
    cfg = transformers.XGLMConfig(d_model=16, ffn_dim=32, num_layers=1, attention_heads=2, vocab_size=260)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(ms.UnsupportedArchitectureError, match="'xglm'.*llama.*mixtral.*opt"):
        ms.HookedModel(model, byte_tokenizer())


def test_unsupported_variant_of_a_supported_family_says_why():
    cfg = transformers.OPTConfig(hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=260, word_embed_proj_dim=16, do_layer_norm_before=False)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(ms.UnsupportedArchitectureError, match="opt: post-norm OPT"):
        ms.HookedModel(model, byte_tokenizer())


def test_prepend_bos_is_explicit(llama):
    assert llama.cfg.default_prepend_bos is False
    with_bos = llama.to_tokens("ab", prepend_bos=True)
    assert with_bos[0, 0] == llama.tokenizer.bos_token_id and with_bos.shape[1] == 3
    assert llama.to_tokens("ab").shape[1] == 2
