"""The patch, lens and dla subcommands end to end, checked by what their numbers must be (tiny saved model)."""

from __future__ import annotations

import json

import pytest
import torch

from tiny import save_model_dir

import mechscope as ms
from mechscope.cli.main import main

CLEAN, CORRUPT = "hello world", "jello world"  # differ at position 0 only (byte tokens, no BOS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_model_dir(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def model(model_dir):
    return ms.load_model(model_dir)


def read(path) -> dict:
    return json.loads(path.read_text())


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip() and not line.startswith("Loading weights")]


@pytest.mark.parametrize("name, doc", [("patch", "Corrupted prompt with the same number of tokens"),
                                       ("lens", "Trained tuned-lens file"),
                                       ("dla", "Competing token")])
def test_help_shows_field_docs(name, doc, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"usage: mechscope {name}" in out and doc in out


def test_patch_identical_prompts_have_no_effect(model_dir, tmp_path, capsys):
    assert main(["patch", "--model", model_dir, "--clean", CLEAN, "--corrupt", CLEAN, "--hooks", "resid_pre",
                 "attn_out", "--out", str(tmp_path)]) == 0
    data = read(tmp_path / "results.json")
    assert data["clean_metric"] == pytest.approx(data["corrupted_metric"])
    for kind in ("resid_pre", "attn_out"):
        sweep = data["sweeps"][kind]
        assert torch.tensor(sweep["effect"]).abs().max() < 1e-5
        assert sweep["normalized"] is None  # 0 / 0: reported as undefined, not NaN
        assert is_png(tmp_path / f"heatmap_{kind}.png")
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 2
    assert str((tmp_path / "results.json").resolve()) in capsys.readouterr().out


def test_patch_recovers_what_it_must(model_dir, model, tmp_path):
    """Layer 0 resid_pre at the one differing token, and the final residual at the last position, restore
    everything; patching an identical token restores nothing."""
    assert main(["patch", "--model", model_dir, "--clean", CLEAN, "--corrupt", CORRUPT, "--hooks", "resid_pre",
                 "resid_post", "--out", str(tmp_path)]) == 0
    data = read(tmp_path / "results.json")
    with torch.no_grad():
        clean_logits, corrupt_logits = model(CLEAN)[0, -1], model(CORRUPT)[0, -1]
    assert data["answer_id"] == int(clean_logits.argmax())  # default answer: the clean prediction
    expected = lambda logits: float(logits[data["answer_id"]] - logits[data["wrong_id"]])  # noqa: E731
    assert data["clean_metric"] == pytest.approx(expected(clean_logits), abs=1e-4)
    assert data["corrupted_metric"] == pytest.approx(expected(corrupt_logits), abs=1e-4)
    pre = torch.tensor(data["sweeps"]["resid_pre"]["normalized"])  # (layers, positions)
    post = torch.tensor(data["sweeps"]["resid_post"]["normalized"])
    n_layers, n_pos = pre.shape
    assert (n_layers, n_pos) == (model.cfg.n_layers, len(CLEAN))
    assert pre[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert pre[0, 1:].abs().max() < 1e-4
    assert post[-1, -1] == pytest.approx(1.0, abs=1e-4)
    assert data["sweeps"]["resid_post"]["rows"] == [f"L{i}" for i in range(n_layers)]


def test_patch_heads_at_one_position(model_dir, model, tmp_path):
    assert main(["patch", "--model", model_dir, "--clean", CLEAN, "--corrupt", CORRUPT, "--answer", "x",
                 "--wrong", "y", "--heads", "--head-position", "-1", "--layers", "1", "2",
                 "--out", str(tmp_path)]) == 0
    data = read(tmp_path / "results.json")
    sweep = data["sweeps"]["attn.z"]
    assert data["answer"] == "x" and data["wrong"] == "y"
    assert sweep["rows"] == ["L1", "L2"] and sweep["cols"] == [f"H{h}" for h in range(model.cfg.n_heads)]
    assert torch.tensor(sweep["normalized"]).isfinite().all()
    assert is_png(tmp_path / "heatmap_attn.z.png")


@pytest.mark.parametrize("extra, message", [
    (["--corrupt", "jello worlds"], "matched token lengths"),
    (["--corrupt", CORRUPT, "--answer", "xy"], "'xy' is not a single token"),
    (["--corrupt", CORRUPT, "--hooks", "resid_pree"], "unknown hook 'resid_pree'; valid hook kinds"),
    (["--corrupt", CORRUPT, "--heads", "--hooks", "mlp_out"], "valid per-head hook kinds (--heads) for this "
                                                             "model: attn.q, attn.k, attn.v, attn.pattern, attn.z"),
    (["--corrupt", CORRUPT, "--positions", "11"], "position 11 is out of range: the prompts have 11 tokens"),
    (["--corrupt", CORRUPT, "--answer", "x", "--wrong", "x"], "the same token"),
    (["--corrupt", CORRUPT, "--layers", "7"], "layers 0..2"),
])
def test_patch_bad_input_is_one_line(model_dir, tmp_path, capsys, extra, message):
    assert main(["patch", "--model", model_dir, "--clean", CLEAN, *extra, "--out", str(tmp_path)]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("mechscope patch: error: ") and message in lines[0], lines


def test_lens_final_row_is_the_model_prediction(model_dir, model, tmp_path):
    assert main(["lens", "--model", model_dir, CLEAN, "--out", str(tmp_path)]) == 0
    data = read(tmp_path / "lens.json")
    with torch.no_grad():
        logits = model(CLEAN)[0]  # (T, V)
    lens = data["logit_lens"]
    assert data["layers"] == [f"L{i}" for i in range(model.cfg.n_layers)] + ["final"]
    assert lens["top_token_id"][-1] == logits.argmax(-1).tolist()  # every position of the last row
    assert data["target_id"] == int(logits[-1].argmax()) and lens["target_rank_last"][-1] == 0
    torch.testing.assert_close(torch.tensor(lens["target_prob"][-1]), logits.softmax(-1)[:, data["target_id"]],
                               atol=1e-5, rtol=1e-4)
    assert max(lens["kl_to_final"][-1]) < 1e-5
    assert len(lens["top_k_last"]) == model.cfg.n_layers + 1 and len(lens["top_k_last"][0]) == 5
    for name in ("lens.png", "target.png", "kl.png"):
        assert is_png(tmp_path / name)


def test_lens_with_untrained_tuned_lens_equals_logit_lens(model_dir, model, tmp_path):
    from mechscope.lens import TunedLens

    TunedLens.for_model(model).save(tmp_path / "lens.safetensors")  # zero translators: the logit lens
    assert main(["lens", "--model", model_dir, CLEAN, "--tuned", str(tmp_path / "lens.safetensors"), "--target",
                 "o", "--out", str(tmp_path / "run")]) == 0
    data = read(tmp_path / "run" / "lens.json")
    assert data["target"] == "o"
    torch.testing.assert_close(torch.tensor(data["tuned_lens"]["target_prob"]),
                               torch.tensor(data["logit_lens"]["target_prob"]))
    assert is_png(tmp_path / "run" / "tuned_lens.png")


@pytest.mark.parametrize("extra, message", [
    (["--target", "xy"], "'xy' is not a single token"),
    (["--tuned", "/nonexistent/lens.safetensors"], "no tuned lens at"),
])
def test_lens_bad_input_is_one_line(model_dir, tmp_path, capsys, extra, message):
    assert main(["lens", "--model", model_dir, CLEAN, *extra, "--out", str(tmp_path)]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("mechscope lens: error: ") and message in lines[0], lines


def test_dla_components_add_up_to_the_logit_difference(model_dir, model, tmp_path):
    assert main(["dla", "--model", model_dir, CLEAN, "--answer", "x", "--wrong", "y", "--out", str(tmp_path)]) == 0
    data = read(tmp_path / "dla.json")
    with torch.no_grad():
        logits = model(CLEAN)[0, -1]
    want = float(logits[model.to_single_token("x")] - logits[model.to_single_token("y")])
    assert sum(data["components"].values()) + data["bias"] == pytest.approx(want, abs=1e-4)
    assert data["total"] == pytest.approx(want, abs=1e-4) and data["model_value"] == pytest.approx(want, abs=1e-5)
    per_layer = data["embed"] + sum(data["attn"]) + sum(data["mlp"])
    assert per_layer == pytest.approx(data["components_sum"], abs=1e-4)
    heads = torch.tensor(data["heads"])
    assert heads.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert float(heads[1].sum()) == pytest.approx(data["attn"][1] - data["components"].get("L1_attn_bias", 0.0),
                                                  abs=1e-5)
    assert is_png(tmp_path / "layers.png") and is_png(tmp_path / "heads.png")


def test_dla_defaults_to_the_top_prediction(model_dir, model, tmp_path):
    assert main(["dla", "--model", model_dir, CLEAN, "--pos", "3", "--out", str(tmp_path)]) == 0
    data = read(tmp_path / "dla.json")
    with torch.no_grad():
        logits = model(CLEAN)[0, 3]
    assert data["answer_id"] == int(logits.argmax()) and data["wrong"] is None and data["pos"] == 3
    assert data["total"] == pytest.approx(float(logits.max()), abs=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--answer", "xy"], "'xy' is not a single token"),
    (["--pos", "40"], "--pos 40 is out of range"),
])
def test_dla_bad_input_is_one_line(model_dir, tmp_path, capsys, extra, message):
    assert main(["dla", "--model", model_dir, CLEAN, *extra, "--out", str(tmp_path)]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("mechscope dla: error: ") and message in lines[0], lines


@pytest.mark.real
def test_real_model_lens_and_dla(tmp_path, smollm):
    prompt = "The capital of France is"
    assert main(["lens", prompt, "--out", str(tmp_path / "lens")]) == 0
    lens = read(tmp_path / "lens" / "lens.json")
    assert lens["target"] == " Paris" and lens["logit_lens"]["top_token"][-1][-1] == " Paris"
    assert lens["logit_lens"]["mean_kl"][0] > lens["logit_lens"]["mean_kl"][-2]  # the lens converges
    assert main(["dla", prompt, "--wrong", " London", "--out", str(tmp_path / "dla")]) == 0
    dla = read(tmp_path / "dla" / "dla.json")
    assert dla["components_sum"] + dla["bias"] == pytest.approx(dla["model_value"], abs=1e-2)
    assert dla["model_value"] > 0
