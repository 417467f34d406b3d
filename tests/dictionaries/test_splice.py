"""Splicing dictionaries into the real tiny random models of tests/tiny.py."""

import pytest
import torch
from tiny import hooked

import mechscope.dictionaries as D

D_SAE = 48


@pytest.fixture(scope="module")
def model():
    return hooked("llama")  # 3 layers, d_model 32


@pytest.fixture(scope="module")
def tokens():
    torch.manual_seed(1)
    return torch.randint(0, 256, (2, 10))


def sae(hook="blocks.1.resid_post", arch="topk", **kw):
    torch.manual_seed(0)
    extra = {"k": 8} if arch == "topk" else {}
    return D.create(arch, d_in=32, d_sae=D_SAE, hook_name=hook, **{**extra, **kw}).eval()


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "gated"])
def test_sae_splice_with_and_without_error_term(model, tokens, arch):
    clean = model(tokens)
    d = sae(arch=arch)
    with torch.no_grad():
        with D.spliced(model, d, keep_error=True) as state:
            kept = model(tokens)
        with D.spliced(model, d) as state2:
            replaced = model(tokens)
    assert max_diff(kept, clean) <= 1e-5
    assert max_diff(replaced, clean) > 1e-3
    assert state.feature_acts["blocks.1.resid_post"].shape == (2, 10, D_SAE)
    assert torch.equal(state.feature_acts["blocks.1.resid_post"], state2.feature_acts["blocks.1.resid_post"])
    assert torch.equal(model(tokens), clean)  # hooks are gone after the block


def test_spliced_activation_is_the_reconstruction(model, tokens):
    d = sae()
    seen = {}

    def observe(act, hook):
        seen[hook.name] = act.clone()

    _, cache = model.run_with_cache(tokens, names=["blocks.1.resid_post"])
    original = cache["blocks.1.resid_post"]
    with torch.no_grad(), D.spliced(model, d), model.hooks([("blocks.2.resid_pre", observe)]):
        model(tokens)
    assert max_diff(seen["blocks.2.resid_pre"], d(original).reconstruction) <= 1e-5


def test_feature_edits_propagate_with_error_term(model, tokens):
    d = sae(arch="relu")
    _, cache = model.run_with_cache(tokens, names=["blocks.1.resid_post"])
    original = cache["blocks.1.resid_post"]
    seen = {}

    def observe(act, hook):
        seen["x"] = act.clone()

    def steer(f):
        f = f.clone()
        f[..., 5] += 3.0
        return f

    with torch.no_grad(), model.hooks([("blocks.2.resid_pre", observe)]):
        with D.spliced(model, D.Splice(d, edit=steer), keep_error=True):
            steered = model(tokens)
    # the activation moved by exactly 3 * decoder direction 5 (error term from the unedited reconstruction)
    assert max_diff(seen["x"], original + 3.0 * d.W_dec[5]) <= 1e-5
    with torch.no_grad(), D.spliced(model, d, keep_error=True, at="blocks.1.resid_post", edit=lambda f: f):
        unchanged = model(tokens)
    assert max_diff(unchanged, model(tokens)) <= 1e-5
    assert max_diff(steered, unchanged) > 1e-3

    def ablate(f):
        return torch.zeros_like(f)

    with torch.no_grad(), model.hooks([("blocks.2.resid_pre", observe)]):
        with D.spliced(model, D.Splice(d, edit=ablate), keep_error=True):
            model(tokens)
    # ablating every feature leaves original - reconstruction + b_dec
    assert max_diff(seen["x"], original - d(original).reconstruction + d.b_dec) <= 1e-5


def test_transcoder_splice(model, tokens):
    torch.manual_seed(0)
    tc = D.create_mlp_transcoder(1, d_model=32, d_sae=D_SAE, skip=True).eval()
    with torch.no_grad():
        tc.W_skip.normal_(std=0.1)
    clean = model(tokens)
    _, cache = model.run_with_cache(tokens, names=["blocks.1.mlp_in"])
    seen = {}

    def observe(act, hook):
        seen[hook.name] = act.clone()

    with torch.no_grad():
        with D.spliced(model, tc, keep_error=True):
            kept = model(tokens)
        with D.spliced(model, tc), model.hooks([("blocks.1.mlp_out", observe)]):
            replaced = model(tokens)
    assert max_diff(kept, clean) <= 1e-5
    assert max_diff(replaced, clean) > 1e-3
    assert max_diff(seen["blocks.1.mlp_out"], tc(cache["blocks.1.mlp_in"]).reconstruction) <= 1e-5


def test_several_dictionaries_at_once(model, tokens):
    clean = model(tokens)
    torch.manual_seed(2)
    tc = D.create_mlp_transcoder(2, d_model=32, d_sae=D_SAE, activation="jumprelu").eval()
    items = [sae("blocks.0.resid_post"), (sae("blocks.1.resid_post", arch="relu"), "blocks.1.resid_post"), tc]
    with torch.no_grad():
        with D.spliced(model, items, keep_error=True) as state:
            kept = model(tokens)
        with D.spliced(model, items):
            replaced = model(tokens)
    assert set(state.feature_acts) == {"blocks.0.resid_post", "blocks.1.resid_post", "blocks.2.mlp_in"}
    assert max_diff(kept, clean) <= 1e-5 and max_diff(replaced, clean) > 1e-3


def test_clt_splice(model, tokens):
    torch.manual_seed(0)
    clt = D.create("clt", d_in=32, d_sae=D_SAE, n_layers=3).eval()
    clean = model(tokens)
    seen = {}

    def observe(act, hook):
        seen[hook.name] = act.clone()

    names = [f"blocks.{i}.{k}" for i in range(3) for k in ("mlp_in", "mlp_out")]
    with torch.no_grad():
        with D.spliced(model, clt, keep_error=True):
            kept = model(tokens)
        with D.spliced(model, clt), model.hooks([(n, observe) for n in names]):
            replaced = model(tokens)
    assert max_diff(kept, clean) <= 1e-5 and max_diff(replaced, clean) > 1e-3
    x = torch.stack([seen[f"blocks.{i}.mlp_in"] for i in range(3)], dim=-2)  # inputs of the spliced run
    recon = clt(x).reconstruction
    for i in range(3):
        assert max_diff(seen[f"blocks.{i}.mlp_out"], recon[..., i, :]) <= 1e-5


def test_gradients_flow_through_splice(model, tokens):
    d = sae(arch="relu")
    with D.spliced(model, d, keep_error=True) as state:
        logits = model(tokens)
    logits[:, -1].logsumexp(-1).sum().backward()
    assert d.W_enc.grad is not None and d.W_enc.grad.abs().sum() > 0
    assert state.feature_acts["blocks.1.resid_post"].grad_fn is not None


def test_splice_errors(model, tokens):
    wide = D.create("relu", d_in=16, d_sae=32, hook_name="blocks.1.resid_post")
    with pytest.raises(D.DictionaryShapeError, match="width 32"):
        with D.spliced(model, wide):
            pass
    with pytest.raises(D.DictionaryShapeError, match="blocks.1.resid_post"):
        with D.spliced(model, (sae(), "blocks.2.resid_post")):
            pass
    with pytest.raises(D.DictionaryConfigError, match="acausal"):
        with D.spliced(model, D.create("crosscoder", d_in=32, d_sae=8, n_layers=2)):
            pass
    with pytest.raises(D.DictionaryConfigError, match="both write"):
        with D.spliced(model, [sae(), sae(arch="relu")]):
            pass
    with pytest.raises(D.DictionaryConfigError, match="no hook_name"):
        with D.spliced(model, D.create("relu", d_in=32, d_sae=8)):
            pass
    with pytest.raises(D.DictionaryShapeError, match="the model has 3"):
        with D.spliced(model, D.create("clt", d_in=32, d_sae=8, n_layers=2, first_layer=2)):
            pass
    assert torch.equal(model(tokens), model(tokens))


def test_load_checks_widths_against_model(model, tmp_path):
    D.create("relu", d_in=16, d_sae=8, hook_name="blocks.1.resid_post").save(tmp_path / "narrow")
    with pytest.raises(D.DictionaryShapeError, match="d_in=16.*width 32"):
        D.load(tmp_path / "narrow", model=model)
    D.create_mlp_transcoder(0, d_model=32, d_sae=8, d_out=20).save(tmp_path / "tc")
    with pytest.raises(D.DictionaryShapeError, match="d_out=20"):
        D.load(tmp_path / "tc", model=model)
    sae().save(tmp_path / "ok")
    assert D.load(tmp_path / "ok", model=model).hook_name == "blocks.1.resid_post"


def test_batchtopk_must_be_in_eval_mode_to_splice(model, tokens):
    d = D.create("batchtopk", d_in=32, d_sae=16, k=4, hook_name="blocks.0.resid_post")
    with pytest.raises(D.DictionaryConfigError, match="eval"):
        with D.spliced(model, d):
            pass
    d.eval()
    clean = model(tokens)
    with torch.no_grad(), D.spliced(model, d, keep_error=True):
        assert max_diff(model(tokens), clean) <= 1e-5


@pytest.mark.parametrize("family", ["gpt2", "neox", "gemma2"])
def test_error_term_keeps_logits_in_other_families(family, tokens):
    m = hooked(family)
    clean = m(tokens)
    torch.manual_seed(0)
    items = [D.create("topk", d_in=32, d_sae=D_SAE, k=8, hook_name="blocks.0.resid_post").eval(),
             D.create_mlp_transcoder(1, d_model=32, d_sae=D_SAE, skip=True).eval()]
    with torch.no_grad():
        with D.spliced(m, items, keep_error=True):
            kept = m(tokens)
        with D.spliced(m, items):
            replaced = m(tokens)
    assert max_diff(kept, clean) <= 1e-5 and max_diff(replaced, clean) > 1e-3


def test_a_dictionary_for_another_model_is_refused_even_when_widths_agree(model, tokens, tmp_path):
    from mechscope.features import FeatureSource

    other = sae(model_name="gpt2")  # model is "tiny-llama": same widths, other model
    with pytest.raises(D.DictionaryModelError, match=r"trained on 'gpt2', but the model is 'tiny-llama'"):
        with model.spliced(other):
            pass
    with pytest.raises(D.DictionaryModelError, match="allow_other_model=True"):
        FeatureSource.from_dictionary(other, model)
    other.save(tmp_path / "other")
    with pytest.raises(D.DictionaryModelError):
        D.load(tmp_path / "other", model=model)
    # explicit override, unrecorded names, and other spellings of the same model are accepted
    assert D.load(tmp_path / "other", model=model, allow_other_model=True).model_name == "gpt2"
    FeatureSource.from_dictionary(other, model, allow_other_model=True)
    with model.spliced(other, allow_other_model=True):
        model(tokens)
    for name in (None, "tiny-llama", "/some/folder/tiny-llama/", "org/Tiny-Llama"):
        with model.spliced(sae(model_name=name)):
            model(tokens)


def test_model_names_compare_across_spellings():
    from mechscope.dictionaries.splice import model_key

    same = ["smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "/cache/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert {model_key(n) for n in same} == {"smollm2-135m"}
    assert model_key("gpt2-small") == model_key("gpt2") != model_key("gpt2-medium")
    assert model_key("google/gemma-2-2b") == model_key("gemma-2-2b") != model_key("gemma-2-9b")
