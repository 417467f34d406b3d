"""Saving and loading: bit-exact round trips, the SAELens layout, validation errors, atomicity, hub paths."""

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

import mechscope.dictionaries as D
from mechscope.dictionaries import io as dio

from .test_architectures import ARCHS, make

# What SAELens (>= 6) reads, per architecture, from its config dataclasses (sae_lens/saes/*.py):
# SAEConfig fields + architecture-specific ones, and the state-dict keys of the inference class.
SAE_LENS_BASE_FIELDS = {"architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input",
                        "normalize_activations", "reshape_activations", "metadata"}
SAE_LENS_LAYOUT = {
    # arch: (create kwargs, SAELens architecture, extra cfg fields, {key: shape(d_in, d_sae, d_out)})
    "relu": ({}, "standard", set(), {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o"}),
    "topk": ({"k": 4}, "topk", {"k", "rescale_acts_by_decoder_norm"},
             {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o"}),
    "jumprelu": ({}, "jumprelu", set(), {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o", "threshold": "s"}),
    "batchtopk": ({"k": 4}, "jumprelu", set(),
                  {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o", "threshold": "s"}),
    "gated": ({}, "gated", set(), {"W_enc": "is", "W_dec": "so", "b_dec": "o", "b_gate": "s", "b_mag": "s",
                                   "r_mag": "s"}),
    "transcoder": ({"d_out": 6}, "transcoder", {"d_out"}, {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o"}),
    "skip_transcoder": ({"d_out": 6}, "skip_transcoder", {"d_out"},
                        {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o", "W_skip": "oi"}),
    "jumprelu_transcoder": ({"d_out": 6, "activation": "jumprelu"}, "jumprelu_transcoder", {"d_out"},
                            {"W_enc": "is", "W_dec": "so", "b_enc": "s", "b_dec": "o", "threshold": "s"}),
}


def _dims(spec, d_in, d_sae, d_out):
    return tuple({"i": d_in, "s": d_sae, "o": d_out}[c] for c in spec)


def roundtrip(d, tmp_path, name="d"):
    d.save(tmp_path / name)
    return D.load(tmp_path / name)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_save_load_round_trips_bit_exactly(arch, tmp_path):
    d = make(arch, hook_name="blocks.2.mlp_in" if arch in ("transcoder", "skip_transcoder") else "blocks.2.resid_post",
             model_name="tiny")
    with torch.no_grad():
        for p in d.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    d.eval()
    e = roundtrip(d, tmp_path)
    assert type(e) is type(d) and e.cfg == d.cfg and e.options == d.options and not e.training
    a, b = d.saved_tensors(), e.saved_tensors()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(5, *d.input_shape())
    assert torch.equal(d(x).reconstruction, e(x).reconstruction)
    # a second save writes identical bytes
    e.save(tmp_path / "again")
    assert (tmp_path / "d" / dio.WEIGHTS_FILE).read_bytes() == (tmp_path / "again" / dio.WEIGHTS_FILE).read_bytes()


def test_extras_round_trip(tmp_path):
    d = make("topk", k=4)
    d.set_activation_norm(torch.linspace(0.5, 2.0, 8))
    d.set_feature_scale(torch.linspace(1.0, 1.5, 32))
    e = roundtrip(d, tmp_path)
    assert torch.equal(e.norm_scale_in, d.norm_scale_in) and torch.equal(e.feature_scale, d.feature_scale)
    cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
    assert cfg["mechscope"]["extras"] == ["norm_scale_in", "norm_scale_out", "feature_scale"]
    assert cfg["normalize_activations"] == "none"
    x = torch.randn(6, 8)
    assert torch.equal(e(x).reconstruction, d(x).reconstruction)
    # fold=True writes a plain SAELens file computing the same function
    d.save(tmp_path / "plain", fold=True)
    assert set(load_file(str(tmp_path / "plain" / dio.WEIGHTS_FILE))) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    plain = D.load(tmp_path / "plain")
    assert plain.norm_scale_in is None and plain.feature_scale is None
    assert torch.allclose(plain(x).reconstruction, d(x).reconstruction, atol=1e-5)
    assert d.norm_scale_in is not None  # folding a copy leaves the original alone


@pytest.mark.parametrize("arch", list(SAE_LENS_LAYOUT))
def test_written_folder_matches_sae_lens_layout(arch, tmp_path):
    kwargs, sl_arch, extra_fields, keys = SAE_LENS_LAYOUT[arch]
    create_arch = "transcoder" if arch == "jumprelu_transcoder" else arch
    hook = "blocks.3.mlp_in" if "transcoder" in arch else "blocks.3.resid_post"
    d = D.create(create_arch, d_in=8, d_sae=16, hook_name=hook, model_name="gpt2",
                 hook_name_out="blocks.3.mlp_out" if "transcoder" in arch else None, **kwargs)
    d.save(tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((tmp_path / "f" / "cfg.json").read_text())
    assert cfg["architecture"] == sl_arch
    assert SAE_LENS_BASE_FIELDS | extra_fields <= set(cfg)
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (8, 16, "float32", "cpu")
    assert cfg["normalize_activations"] == "none" and cfg["reshape_activations"] == "none"
    assert cfg["apply_b_dec_to_input"] is ("transcoder" not in arch)
    meta = cfg["metadata"]
    # SAELens treats configs without a >= 6 version as old flat ones: the version marker must be there
    assert int(meta["sae_lens_version"].split(".")[0]) >= 6
    assert meta["model_name"] == "gpt2"
    if "transcoder" in arch:
        assert cfg["d_out"] == d.d_out
        assert meta["hook_name"] == "blocks.3.ln2.hook_normalized" and meta["hook_name_out"] == "blocks.3.hook_mlp_out"
    else:
        assert meta["hook_name"] == "blocks.3.hook_resid_post"
    if arch == "topk":
        assert cfg["k"] == 4 and cfg["rescale_acts_by_decoder_norm"] is False
    tensors = load_file(str(tmp_path / "f" / "sae_weights.safetensors"))
    assert set(tensors) == set(keys)
    for key, spec in keys.items():
        assert tuple(tensors[key].shape) == _dims(spec, 8, 16, d.d_out), key
        assert tensors[key].dtype == torch.float32
    # only fields under "mechscope" are ours; everything else is SAELens vocabulary
    assert set(cfg) - SAE_LENS_BASE_FIELDS - extra_fields == {"mechscope"}


def _sae_lens_folder(path, arch="standard", d_in=6, d_sae=10, dtype=torch.float32, **cfg_extra):
    torch.manual_seed(3)
    tensors = {"W_enc": torch.randn(d_in, d_sae), "W_dec": torch.randn(d_sae, d_in), "b_enc": torch.randn(d_sae),
               "b_dec": torch.randn(d_in)}
    if arch == "jumprelu":
        tensors["threshold"] = torch.rand(d_sae)
    path.mkdir()
    save_file({k: v.to(dtype) for k, v in tensors.items()}, str(path / "sae_weights.safetensors"))
    cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": str(dtype).removeprefix("torch."),
           "device": "cpu", "apply_b_dec_to_input": arch != "jumprelu", "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"model_name": "gemma-2-2b", "hook_name": "blocks.12.hook_resid_post", "hook_head_index": None,
                        "prepend_bos": True, "context_size": 1024, "sae_lens_version": "6.5.1",
                        "sae_lens_training_version": "6.5.1", "neuronpedia_id": "gemma-2-2b/12-res"},
           **cfg_extra}
    (path / "cfg.json").write_text(json.dumps(cfg))
    return tensors


def test_loads_sae_lens_folder_with_sae_lens_semantics(tmp_path):
    t = _sae_lens_folder(tmp_path / "std")
    d = D.load(tmp_path / "std")
    assert d.architecture == "relu" and d.hook_name == "blocks.12.resid_post" and d.model_name == "gemma-2-2b"
    x = torch.randn(4, 6)
    expected = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    assert torch.allclose(d.encode(x), expected, atol=1e-6)
    assert torch.allclose(d(x).reconstruction, expected @ t["W_dec"] + t["b_dec"], atol=1e-5)

    t = _sae_lens_folder(tmp_path / "jr", arch="jumprelu")
    d = D.load(tmp_path / "jr")
    pre = x @ t["W_enc"] + t["b_enc"]
    assert torch.allclose(d.encode(x), pre.relu() * (pre > t["threshold"]), atol=1e-6)

    _sae_lens_folder(tmp_path / "tk", arch="topk", k=3, rescale_acts_by_decoder_norm=False)
    d = D.load(tmp_path / "tk")
    assert d.architecture == "topk" and d.options.k == 3


def _sae_lens_topk(x, t, k, rescale):
    """SAELens 6.54 TopKSAE.encode / decode, written out (sae_lens/saes/topk_sae.py)."""
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    n = t["W_dec"].norm(dim=-1)
    if rescale:
        pre = pre * n
    values, indices = pre.topk(k, dim=-1, sorted=False)
    acts = torch.zeros_like(pre).scatter(-1, indices, values.relu())
    return acts, (acts / n if rescale else acts) @ t["W_dec"] + t["b_dec"]


@pytest.mark.parametrize("unit_decoder", [False, True])
def test_sae_lens_topk_with_rescale_acts_by_decoder_norm(tmp_path, unit_decoder):
    """SAELens' TopK training writes ``rescale_acts_by_decoder_norm: true`` by default (``save_inference_model``
    folds the norms into the weights but keeps the flag); such files used to be refused. They load with SAELens'
    semantics: pre-activations times the decoder norms before the top-k, activations divided by them to decode."""
    t = _sae_lens_folder(tmp_path / "tk", arch="topk", k=3, rescale_acts_by_decoder_norm=True)
    cfg = json.loads((tmp_path / "tk" / "cfg.json").read_text())
    if unit_decoder:  # exactly what SAELens 6.54.12 TopKTrainingSAE.save_inference_model writes
        t["W_dec"] = t["W_dec"] / t["W_dec"].norm(dim=-1, keepdim=True)
        save_file(t, str(tmp_path / "tk" / "sae_weights.safetensors"))
        cfg["metadata"].update(sae_lens_version="6.54.12", sae_lens_training_version="6.54.12",
                               training_architecture="topk",
                               training_architecture_details={"decoder_init_norm": 0.1, "use_sparse_activations": False,
                                                              "aux_loss_coefficient": 1.0})
        (tmp_path / "tk" / "cfg.json").write_text(json.dumps(cfg))
    assert cfg["architecture"] == "topk" and cfg["rescale_acts_by_decoder_norm"] is True
    d = D.load(tmp_path / "tk")
    assert d.architecture == "topk" and d.options.k == 3
    x = torch.randn(16, 6)
    acts, recon = _sae_lens_topk(x, t, 3, rescale=True)
    assert torch.allclose(d.encode(x), acts, atol=1e-5)
    assert torch.allclose(d(x).reconstruction, recon, atol=1e-5)
    if not unit_decoder:  # the flag matters: reading the weights as a plain TopK would give other numbers
        assert not torch.allclose(_sae_lens_topk(x, t, 3, rescale=False)[1], recon, atol=1e-3)
    # saved again by mechscope: a plain TopK file (flag False, norms folded) computing the same function
    d.save(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "cfg.json").read_text())
    assert again["rescale_acts_by_decoder_norm"] is False
    assert torch.allclose(D.load(tmp_path / "again")(x).reconstruction, recon, atol=1e-5)


def test_rescale_acts_by_decoder_norm_refused_outside_topk(tmp_path):
    _sae_lens_folder(tmp_path / "jr", arch="jumprelu", rescale_acts_by_decoder_norm=True)
    with pytest.raises(D.DictionaryFormatError, match="rescale_acts_by_decoder_norm=True on a 'jumprelu' file"):
        D.load(tmp_path / "jr")


def test_loads_old_flat_sae_lens_config(tmp_path):
    t = _sae_lens_folder(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "cfg.json").read_text())
    del cfg["metadata"]
    cfg.update(hook_point="blocks.4.hook_resid_pre", model_name="gpt2-small")
    (tmp_path / "old" / "cfg.json").write_text(json.dumps(cfg))
    d = D.load(tmp_path / "old")
    assert d.hook_name == "blocks.4.resid_pre" and d.model_name == "gpt2-small"
    assert torch.equal(d.W_enc, t["W_enc"])


def test_bfloat16_files_load_in_their_dtype(tmp_path):
    _sae_lens_folder(tmp_path / "bf", dtype=torch.bfloat16)
    d = D.load(tmp_path / "bf")
    assert d.dtype == torch.bfloat16 and d.encode(torch.randn(2, 6)).dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_architecture_lists_valid_names(tmp_path):
    make("relu").save(tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
    cfg["mechscope"]["architecture"] = "sparse_magic"
    (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(D.UnknownArchitectureError, match="sparse_magic.*relu.*topk"):
        D.load(tmp_path / "d")
    del cfg["mechscope"]
    cfg["architecture"] = "matryoshka_batchtopk"
    (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(D.UnknownArchitectureError, match="matryoshka_batchtopk.*standard.*jumprelu"):
        D.load(tmp_path / "d")


def test_truncated_and_corrupt_safetensors(tmp_path):
    make("relu").save(tmp_path / "d")
    weights = tmp_path / "d" / dio.WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(D.DictionaryFormatError, match="truncated or corrupt"):
        D.load(tmp_path / "d")
    weights.write_bytes(b"\x00" * 7)
    with pytest.raises(D.DictionaryFormatError, match="truncated or corrupt"):
        D.load(tmp_path / "d")
    weights.write_bytes(data[:8] + b"{not json" + data[17:])
    with pytest.raises(D.DictionaryFormatError):
        D.load(tmp_path / "d")


def test_nan_weights_are_refused(tmp_path):
    make("relu").save(tmp_path / "d")
    weights = tmp_path / "d" / dio.WEIGHTS_FILE
    t = load_file(str(weights))
    t["W_dec"][3, 2] = math.nan
    t["b_enc"][0] = math.inf
    save_file(t, str(weights))
    with pytest.raises(D.DictionaryFormatError, match=r"W_dec holds 1 NaN.*|b_enc holds 0 NaN and 1 inf"):
        D.load(tmp_path / "d")
    d = make("relu")
    with torch.no_grad():
        d.W_enc[0, 0] = math.nan
    with pytest.raises(D.DictionaryFormatError, match="refusing to save non-finite"):
        d.save(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


def test_width_mismatch_missing_and_extra_keys(tmp_path):
    make("relu").save(tmp_path / "d")
    cfg_path = tmp_path / "d" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["mechscope"]["config"].update(d_in=7, d_out=7)
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(D.DictionaryFormatError, match=r"W_enc has shape \(8, 32\), expected \(7, 32\)"):
        D.load(tmp_path / "d")
    cfg["mechscope"]["config"].update(d_in=8, d_out=8)
    cfg_path.write_text(json.dumps(cfg))
    weights = tmp_path / "d" / dio.WEIGHTS_FILE
    t = load_file(str(weights))
    t["surprise"] = torch.zeros(2)
    del t["b_enc"]
    save_file(t, str(weights))
    with pytest.raises(D.DictionaryFormatError, match=r"missing keys \['b_enc'\]; unexpected keys \['surprise'\]"):
        D.load(tmp_path / "d")


def test_missing_files_and_bad_json(tmp_path):
    with pytest.raises(D.DictionaryNotFoundError, match="no such"):
        D.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DictionaryNotFoundError, match="holds no dictionary"):
        D.load(tmp_path / "empty")
    make("relu").save(tmp_path / "d")
    (tmp_path / "d" / dio.WEIGHTS_FILE).unlink()
    with pytest.raises(D.DictionaryNotFoundError, match="missing weights file"):
        D.load(tmp_path / "d")
    make("relu").save(tmp_path / "d")
    (tmp_path / "d" / "cfg.json").unlink()
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        D.load(tmp_path / "d")
    make("relu").save(tmp_path / "d")
    (tmp_path / "d" / "cfg.json").write_text("{oops")
    with pytest.raises(D.DictionaryFormatError, match="not valid JSON"):
        D.load(tmp_path / "d")


def test_unsupported_sae_lens_options_are_refused(tmp_path):
    _sae_lens_folder(tmp_path / "n", normalize_activations="expected_average_only_in")
    with pytest.raises(D.DictionaryFormatError, match="normalize_activations"):
        D.load(tmp_path / "n")


def test_atomic_save_keeps_old_folder_on_failure(tmp_path, monkeypatch):
    old = make("relu")
    old.save(tmp_path / "d")
    before = (tmp_path / "d" / dio.WEIGHTS_FILE).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dio, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        make("topk", k=2).save(tmp_path / "d")
    assert (tmp_path / "d" / dio.WEIGHTS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folder left behind
    monkeypatch.undo()
    make("topk", k=2).save(tmp_path / "d")  # replacing an existing dictionary folder works
    assert D.load(tmp_path / "d").architecture == "topk"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(D.DictionaryFormatError, match="refusing to replace"):
        make("relu").save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").exists()


# ---------------------------------------------------------------------------------------------------- hub
def test_parse_hub_path():
    assert D.parse_hub_path("hf://google/gemma-scope/layer_12/width_16k") == ("google/gemma-scope",
                                                                             "layer_12/width_16k", None)
    assert D.parse_hub_path("hf://owner/repo@v1.0") == ("owner/repo", None, "v1.0")
    assert D.parse_hub_path("hf://owner/repo/sub@main") == ("owner/repo", "sub", "main")
    for bad in ("hf://owner", "hf://", "hf://owner/repo/../x", "hf://owner/repo@", "s3://a/b"):
        with pytest.raises(D.DictionaryConfigError):
            D.parse_hub_path(bad)


def test_hub_load_uses_snapshot_download(tmp_path, monkeypatch):
    d = make("jumprelu", hook_name="blocks.1.resid_post")
    d.save(tmp_path / "snapshot" / "layer_1")
    calls = []

    def fake_snapshot(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(dio, "snapshot_download", fake_snapshot)
    e = D.load("hf://me/saes/layer_1@abc123")
    assert calls == [("me/saes", "abc123", ["layer_1", "layer_1/*"])]
    assert torch.equal(e.saved_tensors()["W_enc"], d.saved_tensors()["W_enc"])
    with pytest.raises(D.DictionaryNotFoundError, match="folder 'layer_9' not found"):
        D.load("hf://me/saes/layer_9")
    # a single file in the repo (Gemma Scope style) works too
    import numpy as np

    t = {k: v.numpy() for k, v in d.saved_tensors().items()}
    np.savez(tmp_path / "snapshot" / "params.npz", **t)
    g = D.load("hf://me/saes/params.npz", hook_name="blocks.1.resid_post")
    assert calls[-1] == ("me/saes", None, ["params.npz", "params.npz/*"])
    x = torch.randn(3, 8)
    assert torch.allclose(g.encode(x), D.load_gemma_scope(tmp_path / "snapshot" / "params.npz").encode(x))

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(dio, "snapshot_download", offline)
    with pytest.raises(D.DictionaryNotFoundError, match=r"could not download hf://me/saes/layer_1.*no network"):
        D.load("hf://me/saes/layer_1")


@pytest.mark.parametrize("arch, option", [("topk", "k"), ("batchtopk", "k"), ("crosscoder", "n_layers")])
def test_a_mechscope_cfg_must_state_the_options_that_define_the_function(arch, option, tmp_path):
    make(arch).save(tmp_path / "d")
    cfg_path = tmp_path / "d" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["mechscope"]["options"][option]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(D.DictionaryFormatError, match=rf"must state '{option}'.*no default") as err:
        D.load(tmp_path / "d")
    assert str(cfg_path) in str(err.value)


def test_a_sae_lens_topk_cfg_without_k_is_refused(tmp_path):
    make("topk").save(tmp_path / "d", fold=True)
    cfg_path = tmp_path / "d" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["mechscope"], cfg["k"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(D.DictionaryFormatError, match=r"must state 'k'.*top-level"):
        D.load(tmp_path / "d")


@pytest.mark.parametrize("arch, edit, field", [
    ("topk", lambda c: c.update(k=7), "k: 7 at the top level, 4 in the mechscope block"),
    ("relu", lambda c: c.update(architecture="topk"), "architecture: 'topk' at the top level, 'standard'"),
    ("relu", lambda c: c["mechscope"]["config"].update(transcoder=True, apply_b_dec_to_input=False),
     "architecture: 'standard' at the top level, 'transcoder' in the mechscope block"),
    ("relu", lambda c: c.update(d_sae=64), "d_sae: 64"),
    ("relu", lambda c: c.update(apply_b_dec_to_input=False), "apply_b_dec_to_input"),
    ("topk", lambda c: c.update(rescale_acts_by_decoder_norm=True), "rescale_acts_by_decoder_norm"),
    ("relu", lambda c: c["metadata"].update(model_name="gpt2"), "metadata.model_name: 'gpt2'"),
    ("relu", lambda c: c["metadata"].update(hook_name="blocks.3.hook_resid_post"), "metadata.hook_name"),
])
def test_conflicting_architecture_fields_are_refused(arch, edit, field, tmp_path):
    make(arch, hook_name="blocks.2.resid_post", model_name="tiny").save(tmp_path / "d")
    cfg_path = tmp_path / "d" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(D.DictionaryFormatError, match=re.escape(field)) as err:
        D.load(tmp_path / "d")
    assert str(cfg_path) in str(err.value)
