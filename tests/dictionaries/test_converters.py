"""Foreign layouts, built here from their documented formats (tiny shapes): values must match hand computations."""

import json
import pickle

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import mechscope.dictionaries as D

D_IN, D_SAE = 6, 12


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


# ---------------------------------------------------------------------------------------------------- Gemma Scope
def gemma_params(path, d_out=D_IN):
    p = {"W_enc": rand(D_IN, D_SAE, seed=1), "W_dec": rand(D_SAE, d_out, seed=2), "b_enc": rand(D_SAE, seed=3),
         "b_dec": rand(d_out, seed=4), "threshold": rand(D_SAE, seed=5).abs() * 0.5}
    np.savez(path, **{k: v.numpy() for k, v in p.items()})
    return p


def test_gemma_scope_npz(tmp_path):
    p = gemma_params(tmp_path / "params.npz")
    d = D.load(tmp_path / "params.npz", hook_name="blocks.12.hook_resid_post", model_name="gemma-2-2b")
    assert d.architecture == "jumprelu" and not d.cfg.apply_b_dec_to_input
    assert d.hook_name == "blocks.12.resid_post"
    x = rand(5, D_IN, seed=9) * 2
    pre = x @ p["W_enc"] + p["b_enc"]  # Gemma Scope: no b_dec subtraction
    f = torch.relu(pre) * (pre > p["threshold"])
    assert (f != 0).any() and (f == 0).any()
    assert torch.allclose(d.encode(x), f, atol=1e-6)
    assert torch.allclose(d(x).reconstruction, f @ p["W_dec"] + p["b_dec"], atol=1e-5)
    # also found when given the folder
    assert torch.equal(D.load(tmp_path, hook_name="blocks.12.resid_post").encode(x), d.encode(x))


def test_gemma_scope_transcoder_and_errors(tmp_path):
    p = gemma_params(tmp_path / "params.npz", d_out=4)
    tc = D.load_gemma_scope(tmp_path / "params.npz", hook_name="blocks.3.mlp_in", hook_name_out="blocks.3.mlp_out")
    assert tc.cfg.transcoder and tc.d_out == 4 and tc.hook_name_out == "blocks.3.mlp_out"
    x = rand(3, D_IN, seed=7)
    pre = x @ p["W_enc"] + p["b_enc"]
    assert torch.allclose(tc(x).reconstruction, (pre.relu() * (pre > p["threshold"])) @ p["W_dec"] + p["b_dec"],
                          atol=1e-5)
    np.savez(tmp_path / "bad.npz", W_enc=p["W_enc"].numpy(), W_dec=np.zeros((D_SAE, D_IN), np.float32),
             b_enc=p["b_enc"].numpy(), b_dec=np.zeros(D_IN, np.float32))
    with pytest.raises(D.DictionaryFormatError, match=r"missing keys \['threshold'\]"):
        D.load(tmp_path / "bad.npz")
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "params.npz").read_bytes()[:200])
    with pytest.raises(D.DictionaryFormatError, match="not a readable .npz"):
        D.load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "obj.npz", W_enc=np.array([{"a": 1}], dtype=object))
    with pytest.raises(D.DictionaryFormatError):  # object arrays would need pickle: refused
        D.load(tmp_path / "obj.npz")


# ---------------------------------------------------------------------------------------------------- sparsify
def sparsify_folder(path, *, transcode=False, skip=False, k=3):
    path.mkdir(parents=True)
    cfg = {"activation": "topk", "expansion_factor": 32, "normalize_decoder": True, "num_latents": D_SAE, "k": k,
           "multi_topk": False, "skip_connection": skip, "transcode": transcode, "d_in": D_IN}
    (path / "cfg.json").write_text(json.dumps(cfg))
    t = {"encoder.weight": rand(D_SAE, D_IN, seed=11), "encoder.bias": rand(D_SAE, seed=12),
         "W_dec": rand(D_SAE, D_IN, seed=13), "b_dec": rand(D_IN, seed=14)}
    if skip:
        t["W_skip"] = rand(D_IN, D_IN, seed=15)
    save_file(t, str(path / "sae.safetensors"))
    return t


def sparsify_reference(t, x, k, transcode=False):
    """sparsify SparseCoder.forward: relu(linear) then top-k, decode by gathering W_dec rows."""
    xin = x if transcode else x - t["b_dec"]
    pre = torch.relu(xin @ t["encoder.weight"].T + t["encoder.bias"])
    vals, idx = pre.topk(k, dim=-1)
    out = (vals[..., None] * t["W_dec"][idx]).sum(-2) + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].T
    return torch.zeros_like(pre).scatter(-1, idx, vals), out


def test_sparsify_sae_folder(tmp_path):
    t = sparsify_folder(tmp_path / "layers.6")
    d = D.load(tmp_path / "layers.6")
    assert d.architecture == "topk" and d.options.k == 3 and d.hook_name == "blocks.6.resid_post"
    x = rand(4, D_IN, seed=20)
    f, out = sparsify_reference(t, x, 3)
    assert torch.allclose(d.encode(x), f, atol=1e-6)
    assert torch.allclose(d(x).reconstruction, out, atol=1e-5)


def test_sparsify_skip_transcoder_folder(tmp_path):
    t = sparsify_folder(tmp_path / "layers.2.mlp", transcode=True, skip=True)
    d = D.load(tmp_path / "layers.2.mlp")
    assert d.cfg.transcoder and d.cfg.skip_connection
    assert (d.hook_name, d.hook_name_out) == ("blocks.2.mlp_in", "blocks.2.mlp_out")
    x = rand(4, D_IN, seed=21)
    f, out = sparsify_reference(t, x, 3, transcode=True)
    assert torch.allclose(d.encode(x), f, atol=1e-6)
    assert torch.allclose(d(x).reconstruction, out, atol=1e-5)


def test_sparsify_wrong_shapes(tmp_path):
    sparsify_folder(tmp_path / "layers.1")
    cfg = json.loads((tmp_path / "layers.1" / "cfg.json").read_text())
    cfg["num_latents"] = 10
    (tmp_path / "layers.1" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(D.DictionaryFormatError, match=r"encoder.weight has shape \(12, 6\), expected \(10, 6\)"):
        D.load(tmp_path / "layers.1")


# ---------------------------------------------------------------------------------------------------- dictionary_learning
def test_dictionary_learning_autoencoder(tmp_path):
    sd = {"bias": rand(D_IN, seed=1), "encoder.weight": rand(D_SAE, D_IN, seed=2), "encoder.bias": rand(D_SAE, seed=3),
          "decoder.weight": rand(D_IN, D_SAE, seed=4)}
    torch.save(sd, tmp_path / "ae.pt")
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder", "layer": 3,
                                                                  "lm_name": "EleutherAI/pythia-70m-deduped"}}))
    d = D.load(tmp_path)
    assert d.architecture == "relu" and d.hook_name == "blocks.3.resid_post"
    assert d.model_name == "EleutherAI/pythia-70m-deduped"
    x = rand(5, D_IN, seed=5)
    f = torch.relu((x - sd["bias"]) @ sd["encoder.weight"].T + sd["encoder.bias"])  # AutoEncoder.encode
    assert torch.allclose(d.encode(x), f, atol=1e-6)
    assert torch.allclose(d(x).reconstruction, f @ sd["decoder.weight"].T + sd["bias"], atol=1e-5)


def test_dictionary_learning_topk_and_batchtopk(tmp_path):
    sd = {"encoder.weight": rand(D_SAE, D_IN, seed=2), "encoder.bias": rand(D_SAE, seed=3),
          "decoder.weight": rand(D_IN, D_SAE, seed=4), "b_dec": rand(D_IN, seed=1), "k": torch.tensor(3, dtype=torch.int),
          "threshold": torch.tensor(0.4)}
    torch.save(sd, tmp_path / "ae.pt")
    x = rand(5, D_IN, seed=5)
    post = torch.relu((x - sd["b_dec"]) @ sd["encoder.weight"].T + sd["encoder.bias"])
    d = D.load(tmp_path / "ae.pt")
    assert d.architecture == "topk" and d.options.k == 3
    vals, idx = post.topk(3, dim=-1)
    assert torch.allclose(d.encode(x), torch.zeros_like(post).scatter(-1, idx, vals), atol=1e-6)
    b = D.load_dictionary_learning(tmp_path / "ae.pt", dict_class="BatchTopKSAE")
    assert b.architecture == "batchtopk" and not b.training
    assert torch.allclose(b.encode(x), post * (post > 0.4), atol=1e-6)  # BatchTopKSAE.encode(use_threshold=True)


def test_dictionary_learning_jumprelu_and_gated_fold_decoder_norms(tmp_path):
    jr = {"W_enc": rand(D_IN, D_SAE, seed=1), "b_enc": rand(D_SAE, seed=2), "W_dec": rand(D_SAE, D_IN, seed=3),
          "b_dec": rand(D_IN, seed=4), "threshold": rand(D_SAE, seed=5).abs()}
    torch.save(jr, tmp_path / "jr.pt")
    x = rand(6, D_IN, seed=6) * 2
    pre = x @ jr["W_enc"] + jr["b_enc"]
    f = torch.relu(pre * (pre > jr["threshold"])) * jr["W_dec"].norm(dim=1)  # JumpReluAutoEncoder.encode
    x_hat = (f / jr["W_dec"].norm(dim=1)) @ jr["W_dec"] + jr["b_dec"]
    d = D.load(tmp_path / "jr.pt")
    assert d.architecture == "jumprelu"
    assert (f != 0).any() and torch.allclose(d.encode(x), f, atol=1e-5)
    assert torch.allclose(d(x).reconstruction, x_hat, atol=1e-5)

    g = {"decoder_bias": rand(D_IN, seed=7), "encoder.weight": rand(D_SAE, D_IN, seed=8), "r_mag": rand(D_SAE, seed=9),
         "gate_bias": rand(D_SAE, seed=10), "mag_bias": rand(D_SAE, seed=11), "decoder.weight": rand(D_IN, D_SAE, seed=12)}
    torch.save(g, tmp_path / "gated.pt")
    x_enc = (x - g["decoder_bias"]) @ g["encoder.weight"].T  # GatedAutoEncoder.encode
    f = (x_enc + g["gate_bias"] > 0) * torch.relu(g["r_mag"].exp() * x_enc + g["mag_bias"])
    f = f * g["decoder.weight"].norm(dim=0)
    x_hat = (f / g["decoder.weight"].norm(dim=0)) @ g["decoder.weight"].T + g["decoder_bias"]
    d = D.load(tmp_path / "gated.pt")
    assert d.architecture == "gated"
    assert torch.allclose(d.encode(x), f, atol=1e-5)
    assert torch.allclose(d(x).reconstruction, x_hat, atol=1e-5)


class Exploit:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_dictionary_learning_never_unpickles(tmp_path, capsys):
    with open(tmp_path / "ae.pt", "wb") as fh:
        pickle.dump({"encoder.weight": Exploit()}, fh, protocol=2)
    with pytest.raises(D.DictionaryFormatError, match="weights-only"):
        D.load(tmp_path / "ae.pt")
    assert "unpickled!" not in capsys.readouterr().out
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "odd.pt")
    with pytest.raises(D.DictionaryFormatError, match="match no known dictionary_learning class"):
        D.load(tmp_path / "odd.pt")


# ---------------------------------------------------------------------------------------------------- circuit-tracer
@pytest.mark.parametrize("activation,skip", [("jumprelu", True), ("relu", False), ("topk", False)])
def test_circuit_tracer_export_import_round_trip(tmp_path, activation, skip):
    torch.manual_seed(0)
    extra = {"k": 4} if activation == "topk" else {}
    tcs = [D.create_mlp_transcoder(layer, d_model=D_IN, d_sae=D_SAE, skip=skip, activation=activation,
                                   model_name="tiny-llama", **extra) for layer in range(3)]
    for tc in tcs:
        with torch.no_grad():
            for p in tc.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    D.save_transcoder_set(tcs, tmp_path / "set")
    files = sorted(p.name for p in (tmp_path / "set").iterdir())
    assert files == ["config.yaml", "layer_0.safetensors", "layer_1.safetensors", "layer_2.safetensors"]
    config = yaml.safe_load((tmp_path / "set" / "config.yaml").read_text())
    assert config["model_kind"] == "transcoder_set" and config["model_name"] == "tiny-llama"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == ("mlp.hook_in", "hook_mlp_out")
    layer0 = load_file(str(tmp_path / "set" / "layer_0.safetensors"))
    expected_keys = {"W_enc", "W_dec", "b_enc", "b_dec"} | ({"activation_function.threshold"}
                                                           if activation == "jumprelu" else set())
    assert set(layer0) == expected_keys | ({"W_skip"} if skip else set())
    assert layer0["W_enc"].shape == (D_SAE, D_IN)  # circuit-tracer orientation: F.linear(x, W_enc, b_enc)
    assert torch.equal(layer0["W_enc"], tcs[0].W_enc.detach().T)
    back = D.load_transcoder_set(tmp_path / "set")
    assert len(back) == 3
    x = torch.randn(5, D_IN)
    for layer, (a, b) in enumerate(zip(tcs, back)):
        assert (b.hook_name, b.hook_name_out) == (f"blocks.{layer}.mlp_in", f"blocks.{layer}.mlp_out")
        assert b.architecture == activation and b.cfg.skip_connection == skip
        sa, sb = a.saved_tensors(), b.saved_tensors()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert torch.equal(a(x).reconstruction, b(x).reconstruction)


def test_circuit_tracer_hand_built_set(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    w_enc, b_enc = rand(D_SAE, D_IN, seed=1), rand(D_SAE, seed=2)
    w_dec, b_dec, thr = rand(D_SAE, D_IN, seed=3), rand(D_IN, seed=4), rand(D_SAE, seed=5).abs()
    save_file({"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec, "activation_function.threshold": thr},
              str(folder / "layer_0.safetensors"))
    (folder / "config.yaml").write_text("model_name: google/gemma-2-2b\nmodel_kind: transcoder_set\n"
                                        "feature_input_hook: hook_resid_mid\nfeature_output_hook: hook_mlp_out\n")
    (tc,) = D.load_transcoder_set(folder)
    assert tc.hook_name == "blocks.0.resid_mid" and tc.hook_name_out == "blocks.0.mlp_out"
    x = rand(4, D_IN, seed=6) * 2
    pre = torch.nn.functional.linear(x, w_enc, b_enc)
    acts = pre * (pre > thr)  # circuit-tracer jumprelu
    assert torch.allclose(tc.encode(x), acts, atol=1e-6)
    assert torch.allclose(tc(x).reconstruction, acts @ w_dec + b_dec, atol=1e-5)
    (folder / "layer_2.safetensors").write_bytes((folder / "layer_0.safetensors").read_bytes())
    with pytest.raises(D.DictionaryFormatError, match="layer_0..layer_N"):
        D.load_transcoder_set(folder)
    with pytest.raises(D.DictionaryFormatError, match="circuit-tracer transcoder set"):
        D.load(folder)


def test_circuit_tracer_export_refuses_non_transcoders(tmp_path):
    with pytest.raises(D.DictionaryConfigError, match="transcoder"):
        D.save_transcoder_set([D.create("relu", d_in=4, d_sae=8)], tmp_path / "x")
    with pytest.raises(D.DictionaryConfigError, match="block 0"):
        D.save_transcoder_set([D.create_mlp_transcoder(1, d_model=4, d_sae=8)], tmp_path / "x")
