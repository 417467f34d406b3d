"""Pretrained dictionaries by name, offline: a local hub cache (``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE`` in a temporary
folder) holds small fake files in each release's real layout; ``load_pretrained`` must find, convert and check them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from mechscope.dictionaries import PretrainedNotFoundError, RELEASES, list_releases, load_pretrained

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Writes files into a huggingface_hub cache as a download would leave them (refs/main -> one snapshot)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, repo: str, filename: str) -> Path:
        base = self.root / f"models--{repo.replace('/', '--')}"
        (base / "refs").mkdir(parents=True, exist_ok=True)
        (base / "refs" / "main").write_text(COMMIT)
        p = base / "snapshots" / COMMIT / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def npz(self, repo: str, filename: str, d_in: int, d_sae: int, d_out: int | None = None, seed: int = 0) -> dict:
        g = np.random.default_rng(seed)
        arrays = {"W_enc": g.normal(size=(d_in, d_sae)).astype(np.float32),
                  "W_dec": g.normal(size=(d_sae, d_out or d_in)).astype(np.float32),
                  "b_enc": g.normal(size=d_sae).astype(np.float32), "b_dec": g.normal(size=d_out or d_in).astype(np.float32),
                  "threshold": np.abs(g.normal(size=d_sae)).astype(np.float32)}
        with open(self.path(repo, filename), "wb") as fh:
            np.savez(fh, **arrays)
        return arrays

    def text(self, repo: str, filename: str, text: str) -> None:
        self.path(repo, filename).write_text(text)

    def tensors(self, repo: str, filename: str, tensors: dict) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(self.path(repo, filename)))


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    from huggingface_hub import constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return FakeHub(root)


def jumprelu(x, w_enc, b_enc, thr):
    pre = x @ w_enc + b_enc
    return pre * (pre > thr)


def test_gemma_scope_explicit_and_canonical_ids(hub):
    repo = "google/gemma-scope-2b-pt-res"
    for n in (40, 95, 130):
        hub.npz(repo, f"layer_3/width_16k/average_l0_{n}/params.npz", 8, 12, seed=n)
    canonical = load_pretrained("gemma-scope-2b-pt-res", "layer_3/width_16k/canonical")
    explicit = load_pretrained("gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_95")
    arrays = dict(np.load(hub.path(repo, "layer_3/width_16k/average_l0_95/params.npz")))
    assert torch.equal(canonical.W_dec, explicit.W_dec)  # 95 is closest to an L0 of 100
    assert explicit.cfg.hook_name == "blocks.3.resid_post" and explicit.cfg.model_name == "google/gemma-2-2b"
    x = torch.randn(5, 8)
    want = jumprelu(x, torch.from_numpy(arrays["W_enc"]), torch.from_numpy(arrays["b_enc"]),
                    torch.from_numpy(arrays["threshold"]))
    assert torch.allclose(explicit.encode(x), want, atol=1e-5)
    same = load_pretrained("gemma-scope-2b-pt-res-canonical", "layer_3/width_16k/canonical")
    assert torch.equal(same.W_enc, canonical.W_enc)


def test_gemma_scope_mlp_att_and_transcoders(hub):
    hub.npz("google/gemma-scope-2b-pt-mlp", "layer_1/width_16k/average_l0_50/params.npz", 8, 10)
    hub.npz("google/gemma-scope-2b-pt-att", "layer_2/width_65k/average_l0_60/params.npz", 16, 10)
    hub.npz("google/gemma-scope-2b-pt-transcoders", "layer_5/width_16k/average_l0_40/params.npz", 8, 10, d_out=8)
    mlp = load_pretrained("gemma-scope-2b-pt-mlp", "layer_1/width_16k/average_l0_50")
    att = load_pretrained("gemma-scope-2b-pt-att", "layer_2/width_65k/average_l0_60")
    tc = load_pretrained("gemma-scope-2b-pt-transcoders", "layer_5/width_16k/average_l0_40")
    assert mlp.cfg.hook_name == "blocks.1.mlp_out" and att.cfg.hook_name == "blocks.2.attn.z"
    assert tc.cfg.transcoder and (tc.cfg.hook_name, tc.cfg.hook_name_out) == ("blocks.5.mlp_in", "blocks.5.mlp_out")


def test_llama_scope_folds_dataset_normalisation(hub):
    repo, folder = "fnlp/Llama3_1-8B-Base-LXR-8x", "Llama3_1-8B-Base-L7R-8x"
    d, s = 16, 24
    hp = {"d_model": d, "d_sae": s, "hook_point_in": "blocks.7.hook_resid_post", "hook_point_out":
          "blocks.7.hook_resid_post", "jump_relu_threshold": 0.25, "norm_activation": "dataset-wise",
          "dataset_average_activation_norm": {"in": 8.0, "out": 8.0}}
    hub.text(repo, f"{folder}/hyperparams.json", json.dumps(hp))
    torch.manual_seed(0)
    w = {"encoder.weight": torch.randn(s, d), "encoder.bias": torch.randn(s) * 0.1,
         "decoder.weight": torch.randn(d, s), "decoder.bias": torch.randn(d)}
    hub.tensors(repo, f"{folder}/checkpoints/final.safetensors", w)
    sae = load_pretrained("llama_scope_lxr_8x", "l7r_8x")
    assert sae.cfg.hook_name == "blocks.7.resid_post" and not sae.cfg.transcoder
    x = torch.randn(6, d) * 3
    c = d ** 0.5 / 8.0
    pre = (c * x) @ w["encoder.weight"].T + w["encoder.bias"]
    f = pre * (pre > 0.25)
    want = (f @ w["decoder.weight"].T + w["decoder.bias"]) / c  # back in the model's units
    out = sae(x)
    assert torch.allclose(out.feature_acts, f, atol=1e-5) and torch.allclose(out.reconstruction, want, atol=1e-4)


def test_saelens_gpt2_folder(hub):
    repo, folder = "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.6.hook_resid_pre"
    cfg = {"d_in": 8, "d_sae": 16, "hook_point": folder, "hook_point_layer": 6, "model_name": "gpt2-small",
           "dtype": "float32", "context_size": 128}
    hub.text(repo, f"{folder}/cfg.json", json.dumps(cfg))
    torch.manual_seed(0)
    w = {"W_enc": torch.randn(8, 16), "W_dec": torch.randn(16, 8), "b_enc": torch.randn(16), "b_dec": torch.randn(8)}
    hub.tensors(repo, f"{folder}/sae_weights.safetensors", w)
    sae = load_pretrained("gpt2-small-res-jb", folder)
    assert sae.cfg.hook_name == "blocks.6.resid_pre" and sae.architecture == "relu" and sae.d_sae == 16
    # trained on TransformerLens' centred stream (center_writing_weights): on the uncentred stream the features are
    # those of the centred input, whatever the input's mean
    x = torch.randn(5, 8) + 3.0 * torch.randn(5, 1)                       # rows with large, different means
    centred = x - x.mean(-1, keepdim=True)
    want = torch.relu((centred - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    assert torch.allclose(sae.encode(x), want, atol=1e-5)
    assert not torch.allclose(torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]), want, atol=1e-2)


def test_input_centring_keeps_a_gpt2_models_logits_when_spliced():
    """The centred reconstruction differs from the stream by its mean component only, which LayerNorm removes: a
    dictionary that reconstructs perfectly on the centred stream, spliced into GPT-2, leaves the logits unchanged."""
    from tiny import hooked

    import mechscope as ms
    from mechscope.dictionaries.pretrained import fold_input_centring

    model = hooked("gpt2")
    d_model = model.cfg.d_model
    sae = ms.dictionaries.create("relu", d_in=d_model, d_sae=2 * d_model, hook_name="blocks.1.resid_pre",
                                 apply_b_dec_to_input=False)
    with torch.no_grad():   # f = relu([c, -c]) and W_dec = [I; -I]: reconstructs the centred input c exactly
        eye = torch.eye(d_model)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.b_enc.zero_(); sae.b_dec.zero_()
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
    fold_input_centring(sae)
    tokens = torch.tensor([[1, 5, 9, 2, 7]])
    clean = model(tokens)
    with model.spliced(sae):
        spliced = model(tokens)
    x = model.run_with_cache(tokens, names=["blocks.1.resid_pre"])[1]["blocks.1.resid_pre"]
    assert (x.mean(-1).abs() > 1e-3).any()                                  # HF's stream is not centred
    assert torch.allclose(sae(x).reconstruction, x - x.mean(-1, keepdim=True), atol=1e-5)  # centred, not x
    assert torch.allclose(spliced, clean, atol=1e-4)


def test_circuit_tracer_qwen3_set_one_layer_and_all(hub):
    rel = RELEASES["circuit-tracer-qwen3-0.6b"]
    hub.text(rel.repo_id, "config.yaml", yaml.safe_dump({
        "model_name": "Qwen/Qwen3-0.6B", "model_kind": "transcoder_set", "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out"}))
    for i in range(rel.n_layers):
        hub.tensors(rel.repo_id, f"layer_{i}.safetensors", {"W_enc": torch.randn(6, 4), "W_dec": torch.randn(6, 4),
                                                            "b_enc": torch.zeros(6), "b_dec": torch.zeros(4),
                                                            "W_skip": torch.zeros(4, 4)})
    one = load_pretrained("circuit-tracer-qwen3-0.6b", "layer_3")
    assert (one.cfg.hook_name, one.cfg.hook_name_out) == ("blocks.3.mlp_in", "blocks.3.mlp_out")
    assert one.cfg.skip_connection and one.cfg.model_name == "Qwen/Qwen3-0.6B"
    every = load_pretrained("circuit-tracer-qwen3-0.6b", "all")
    assert len(every) == 28 and every[27].cfg.hook_name == "blocks.27.mlp_in"


def test_circuit_tracer_gemma_set_lists_gemma_scope_files(hub):
    rel = RELEASES["circuit-tracer-gemma-2-2b"]
    files = [f"hf://google/gemma-scope-2b-pt-transcoders/layer_{i}/width_16k/average_l0_{10 + i}/params.npz"
             for i in range(rel.n_layers)]
    hub.text(rel.repo_id, "config.yaml", yaml.safe_dump({
        "model_name": "google/gemma-2-2b", "model_kind": "transcoder_set", "feature_input_hook": "ln2.hook_normalized",
        "feature_output_hook": "hook_mlp_out", "transcoders": files}))
    hub.npz("google/gemma-scope-2b-pt-transcoders", "layer_2/width_16k/average_l0_12/params.npz", 8, 10, d_out=8)
    tc = load_pretrained("circuit-tracer-gemma-2-2b", "layer_2")
    assert tc.cfg.transcoder and tc.cfg.hook_name == "blocks.2.mlp_in" and tc.cfg.hook_name_out == "blocks.2.mlp_out"
    with pytest.raises(PretrainedNotFoundError, match="HF_HUB_OFFLINE"):  # layer 3 is not in the cache
        load_pretrained("circuit-tracer-gemma-2-2b", "layer_3")


def test_unknown_names_list_close_ones(hub):
    with pytest.raises(PretrainedNotFoundError, match="closest: gemma-scope-2b-pt-res"):
        load_pretrained("gemma-scope-2b-res", "layer_0/width_16k/canonical")
    with pytest.raises(PretrainedNotFoundError, match=r"layer_3/width_16k/canonical"):
        load_pretrained("gemma-scope-2b-pt-res", "layer_3/width_16/canonical")
    with pytest.raises(PretrainedNotFoundError, match="layers 0..25"):
        load_pretrained("gemma-scope-2b-pt-res", "layer_26/width_16k/average_l0_10")
    with pytest.raises(PretrainedNotFoundError, match="blocks.6.hook_resid_pre"):
        load_pretrained("gpt2-small-res-jb", "blocks.6.hook_resid_mid")
    with pytest.raises(PretrainedNotFoundError, match="HF_HUB_OFFLINE"):  # nothing of the repo is cached
        load_pretrained("gemma-scope-2b-pt-res", "layer_0/width_16k/average_l0_10")
    hub.npz("google/gemma-scope-2b-pt-res", "layer_1/width_16k/average_l0_50/params.npz", 4, 6)
    with pytest.raises(PretrainedNotFoundError, match="no layer_0/width_16k/average_l0_"):
        load_pretrained("gemma-scope-2b-pt-res", "layer_0/width_16k/canonical")  # no variant of that layer
    with pytest.raises(KeyError):  # also a KeyError, as a lookup by name
        load_pretrained("nope", "x")


def test_registry_covers_the_public_families():
    names = set(RELEASES)
    assert {"gemma-scope-2b-pt-res", "gemma-scope-2b-pt-mlp", "gemma-scope-2b-pt-att", "gemma-scope-2b-pt-transcoders",
            "llama_scope_lxr_8x", "circuit-tracer-gemma-2-2b", "circuit-tracer-qwen3-4b", "gpt2-small-res-jb"} <= names
    assert all(r.model.count("/") == 1 and r.repo_id.count("/") == 1 for r in RELEASES.values())
    # the repositories circuit-tracer's own presets resolve to ("gemma", "llama" in circuit_tracer.utils.hf_utils)
    assert RELEASES["circuit-tracer-gemma-2-2b"].repo_id == "mwhanna/gemma-scope-transcoders"
    assert RELEASES["circuit-tracer-llama-3.2-1b"].repo_id == "mntss/transcoder-Llama-3.2-1B"
    assert {r.name for r in list_releases("qwen3")} == {n for n in names if "qwen3" in n}


def test_cli_lists_releases_with_model_and_hook_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mechscope.cli.main", "dictionaries", "list", "--model", "gemma-2-2b"],
                         capture_output=True, text=True, check=True).stdout
    assert "gemma-scope-2b-pt-res " in out and "google/gemma-2-2b" in out and "blocks.{L}.resid_post" in out
    assert "llama_scope" not in out
    bad = subprocess.run([sys.executable, "-m", "mechscope.cli.main", "dictionaries", "list", "--release", "gema"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "closest" in bad.stderr
