"""``mechscope probe`` / ``heads`` / ``report`` as a user runs them, on a tiny saved model (in-process ``main``)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from mechscope.cli.main import main
from tiny import save_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model_dir(tmp_path_factory.mktemp("tiny-llama"))


def marker_texts(n: int = 160, seed: int = 0) -> list[dict]:
    """Random letter strings; every second one has a '#' somewhere (label "marker"), the others not ("plain")."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        chars = [rng.choice("abcdefgh") for _ in range(rng.randint(8, 16))]
        if i % 2:
            chars[rng.randrange(len(chars))] = "#"
        rows.append({"text": "".join(chars), "label": "marker" if i % 2 else "plain"})
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("mechscope ")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------------- probe
def test_probe_decodes_a_marker_and_shuffled_labels_do_not(model_dir, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file

    import mechscope as ms
    from mechscope.probes import Probe, text_activations

    rows = marker_texts()
    data = write_jsonl(tmp_path / "marker.jsonl", rows)
    out = tmp_path / "probe"
    argv = ["probe", "--model", str(model_dir), "--data", str(data), "--hook", "blocks.0.resid_post", "--layers", "0",
            "1", "--max-iter", "50"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str((out / "probe.json").resolve()) in printed and "control accuracy" in printed
    res = json.loads((out / "probe.json").read_text())
    assert [r["hook"] for r in res["layers"]] == ["blocks.0.resid_post", "blocks.1.resid_post"]
    assert res["classes"] == ["marker", "plain"] and res["class_counts"] == {"marker": 80, "plain": 80}
    best = max(res["layers"], key=lambda r: r["test"])
    assert best["test"] >= 0.9, res["layers"]
    assert best["control"] < 0.7 and best["selectivity"] > 0.25
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The saved weights (safetensors, fitted on every example) classify the texts from the pooled activations.
    tensors = load_file(out / "probe.safetensors")
    with safe_open(out / "probe.safetensors", "pt") as f:
        assert json.loads(f.metadata()["classes"]) == ["marker", "plain"]
    hook = "blocks.0.resid_post"
    probe = Probe(*(tensors[f"{hook}.{k}"] for k in ("weight", "bias", "mean", "std")), task="classification")
    model = ms.load_model(str(model_dir))
    x = text_activations(model, [r["text"] for r in rows], [hook], pooling="mean").acts[hook]
    y = torch.tensor([0 if r["label"] == "marker" else 1 for r in rows])
    assert probe.evaluate(x, y) >= 0.95

    # Same texts, labels shuffled: nothing to decode, every layer stays near chance.
    labels = [r["label"] for r in rows]
    random.Random(1).shuffle(labels)
    shuffled = write_jsonl(tmp_path / "shuffled.jsonl", [{"text": r["text"], "label": lab}
                                                          for r, lab in zip(rows, labels)])
    assert main([*argv[:4], str(shuffled), *argv[5:], "--out", str(tmp_path / "shuffled")]) == 0
    res = json.loads((tmp_path / "shuffled" / "probe.json").read_text())
    assert max(r["test"] for r in res["layers"]) < 0.7, res["layers"]


def test_probe_bad_input_gives_one_line(model_dir, tmp_path, capsys):
    base = ["probe", "--model", str(model_dir), "--hook", "blocks.0.resid_post", "--out", str(tmp_path / "o")]
    assert main([*base, "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "data file not found" in one_error_line(capsys)

    good = json.dumps({"text": "abc", "label": 1})
    bad = write_jsonl(tmp_path / "bad.jsonl", [good, "", good, '{"text": "abc", "label": 1'])
    assert main([*base, "--data", str(bad)]) == 2
    assert re.search(r"bad\.jsonl line 4: not valid JSON", one_error_line(capsys))

    nofield = write_jsonl(tmp_path / "nofield.jsonl", [{"text": "a", "y": 1}])
    assert main([*base, "--data", str(nofield)]) == 2
    line = one_error_line(capsys)
    assert "line 1: no 'label' field (the line has: text, y)" in line and "--label-field" in line

    one_class = write_jsonl(tmp_path / "one.jsonl", [{"text": t, "label": "x"} for t in ("ab", "cd", "ef", "gh")])
    assert main([*base, "--data", str(one_class)]) == 2
    assert "at least two classes" in one_error_line(capsys)

    data = write_jsonl(tmp_path / "ok.jsonl", marker_texts(8))
    assert main([*base, "--data", str(data), "--task", "regression"]) == 2
    assert "ok.jsonl line 1: --task regression needs numeric labels, got 'plain'" in one_error_line(capsys)
    assert main([*base[:3], "--hook", "blocks.7.resid_post", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "layers 0..2" in one_error_line(capsys)
    assert main([*base[:3], "--hook", "embed", "--layers", "0", "--data", str(data)]) == 2
    assert "--layers sweeps a block hook point" in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------------- heads
def test_heads_json_matches_the_library(model_dir, tmp_path, capsys):
    import mechscope as ms
    from mechscope.heads import KINDS, head_scores

    out = tmp_path / "heads"
    assert main(["heads", "--model", str(model_dir), "--seq-len", "6", "--n-sequences", "2", "--seed", "3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "heads.json").read_text())
    expected = head_scores(ms.load_model(str(model_dir)), n=2, seq_len=6, seed=3)
    assert list(data["scores"]) == list(KINDS) and (data["n_layers"], data["n_heads"]) == (3, 4)
    for kind in KINDS:
        got = torch.tensor(data["scores"][kind])
        assert got.shape == (3, 4)
        torch.testing.assert_close(got, expected.scores[kind].float(), atol=1e-6, rtol=0)
        assert (out / f"heads_{kind}.png").stat().st_size > 1000
        top = data["top"][kind][0]
        assert (top["head"], pytest.approx(top["score"])) == expected.top(kind, 1)[0]
        assert f"{kind}: {top['head']} " in printed
    assert set(data["classes"]) == {f"L{layer}H{h}" for layer in range(3) for h in range(4)}

    assert main(["heads", "--model", str(model_dir), "--detectors", "induction", "--seq-len", "6", "--n-sequences",
                 "1", "--out", str(tmp_path / "one")]) == 0
    assert list(json.loads((tmp_path / "one" / "heads.json").read_text())["scores"]) == ["induction"]
    assert sorted(p.name for p in (tmp_path / "one").glob("*.png")) == ["heads_induction.png"]


def test_heads_bad_arguments(model_dir, capsys):
    assert main(["heads", "--model", str(model_dir), "--detectors", "induction", "copying"]) == 2
    assert one_error_line(capsys) == ("mechscope heads: error: unknown detector 'copying'; valid: previous_token, "
                                      "induction, duplicate_token, attention_sink")
    assert main(["heads", "--model", str(model_dir), "--seq-len", "40"]) == 2  # tiny model: 64 positions
    assert "use --seq-len 31 or less" in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def full_run(model_dir, tmp_path_factory) -> Path:
    """One folder holding what train, features, attribute, heads and probe write, plus another command's results."""
    from circuits.helpers import random_transcoders

    import mechscope as ms
    from mechscope.dictionaries import save_transcoder_set
    from mechscope.display.figures import heatmap

    tmp = tmp_path_factory.mktemp("analysis")
    run = tmp / "run"
    corpus = write_jsonl(tmp / "docs.jsonl", [{"text": f"def f{i}(x):\n    return x * {i}\n"} for i in range(200)])
    common = ["--model", str(model_dir)]
    assert main(["train", *common, "--hook", "blocks.1.resid_post", "--arch", "topk", "--k", "4", "--expansion", "2",
                 "--source", str(corpus), "--context-size", "16", "--batch-size", "64", "--buffer-rows", "128",
                 "--model-batch", "4", "--steps", "4", "--log-every", "2", "--warmup-steps", "1",
                 "--eval-contexts", "2", "--out", str(run)]) == 0
    assert main(["features", str(run), "--corpus", str(corpus), "--max-tokens", "200", "--max-length", "16",
                 "--dashboards", "2"]) == 0
    save_transcoder_set(random_transcoders(ms.load_model(str(model_dir))), tmp / "tc", model_name="tiny")
    assert main(["attribute", *common, "--transcoders", str(tmp / "tc"), "--out", str(run), "--max-feature-nodes",
                 "20", "--batch-size", "20", "hello"]) == 0
    assert main(["heads", *common, "--seq-len", "6", "--n-sequences", "1", "--out", str(run / "heads")]) == 0
    data = write_jsonl(tmp / "marker.jsonl", marker_texts(40))
    assert main(["probe", *common, "--data", str(data), "--hook", "blocks.0.resid_post", "--max-iter", "20",
                 "--out", str(run)]) == 0
    # Another command's output: a JSON with a "command" field and the figure it drew.
    other = run / "patch"
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"command": "patch", "clean": "hello", "clean_metric": 1.5}))
    heatmap(torch.eye(3), ["a", "b", "c"], ["x", "y", "z"], path=other / "heatmap_resid_pre.png")
    return run


def test_report_has_a_section_per_artifact_with_embedded_plots(full_run, capsys):
    assert main(["report", str(full_run)]) == 0
    out = capsys.readouterr().out
    path = full_run / "report.html"
    assert out.strip().splitlines()[-1] == str(path.resolve())
    html = path.read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    assert titles == ["Training run", "Dictionary evaluation", "Features", "Attribution graph", "Linear probe",
                      "Attention heads (heads)", "mechscope patch (patch)"]
    sections = dict(zip(titles, re.split(r"<h2>.*?</h2>", html)[1:]))
    # training curves; density histogram; feature density; graph drawing; probe plot; 4 heatmaps; the patch figure
    assert html.count('src="data:image/png;base64,') == 10
    for title in ("Training run", "Dictionary evaluation", "Features", "Attribution graph", "Linear probe",
                  "mechscope patch (patch)"):
        assert "data:image/png;base64," in sections[title], title
    assert sections["Attention heads (heads)"].count("data:image/png;base64,") == 4
    assert "topk_blocks.1.resid_post" in sections["Training run"]
    assert "href='dashboards/index.html'" in sections["Features"]
    assert "hello" in sections["Attribution graph"] and "heatmap_resid_pre.png" in sections["mechscope patch (patch)"]
    assert "blocks.0.resid_post" in sections["Linear probe"] and "shuffled labels" in sections["Linear probe"]
    assert not list(full_run.glob(".report-*"))  # atomic write leaves no temporary file


def test_report_errors_name_what_it_looks_for(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "run folder not found" in one_error_line(capsys)
    (tmp_path / "notes.txt").write_text("hi")
    assert main(["report", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert f"nothing to report in {tmp_path}" in line
    for name in ("run.json", "metrics.jsonl", "eval.json", "features.db", "graph.json", "heads.json", "probe.json",
                 "results.json"):
        assert name in line


def test_report_keeps_going_past_an_unreadable_file(tmp_path, capsys):
    (tmp_path / "heads.json").write_text("{not json")
    (tmp_path / "probe.json").write_text(json.dumps({"layers": [{"hook": "blocks.0.resid_post", "label": "L0",
                                                                 "train": 1.0, "test": 0.9, "control": 0.5,
                                                                 "selectivity": 0.4}], "metric": "accuracy"}))
    assert main(["report", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "Could not read <code>heads.json</code>" in html and html.count("data:image/png;base64,") == 1


# ---------------------------------------------------------------------------------------------------- help
@pytest.mark.parametrize("name, text", [("probe", "JSONL file of labelled texts"),
                                        ("heads", "Detectors to run: previous_token, induction"),
                                        ("report", "RUN/report.html")])
def test_help(name, text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"usage: mechscope {name}" in out and text in out


@pytest.mark.real
def test_heads_and_report_on_smollm(smollm, tmp_path, capsys):
    """SmolLM2-135M has strong induction heads; the command finds them and the report shows them."""
    assert main(["heads", "--detectors", "induction", "previous_token", "--n-sequences", "2", "--out",
                 str(tmp_path)]) == 0
    data = json.loads((tmp_path / "heads.json").read_text())
    assert torch.tensor(data["scores"]["induction"]).shape == (30, 9)
    best = data["top"]["induction"][0]
    assert best["score"] >= 0.5 and data["classes"][best["head"]] == "induction"
    assert f"induction: {best['head']} " in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert best["head"] in html and html.count("data:image/png;base64,") == 2
