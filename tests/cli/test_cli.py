"""The mechscope command as a user runs it: help texts, listing, clear one-line errors, the tour."""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mechscope.cli.main import build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mechscope.cli.main", *args], capture_output=True, text=True)


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"models", "tour"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: mechscope {name}" in out


def test_help_text_comes_from_field_docstrings(capsys):
    with pytest.raises(SystemExit):
        main(["tour", "--help"])
    assert "Smaller settings for CI" in capsys.readouterr().out


def test_models_lists_builtins_with_cache_state(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MECHSCOPE_HOME", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "gemma-3-270m" in out and "not fetched" in out and str(tmp_path) in out


def test_bad_arguments_give_one_clear_line():
    bad_choice = run_cli("models", "explode")
    assert bad_choice.returncode == 2 and "invalid choice: 'explode'" in bad_choice.stderr
    unknown = run_cli("models", "fetch", "gpt5")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "mechscope models: error: unknown built-in model 'gpt5'; built-ins are: smollm2-135m, gemma-3-270m"]
    missing = run_cli("tour", "--model", "/nonexistent/model.gguf", "--out", "/tmp/x")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "GGUF file not found" in missing.stderr


@pytest.mark.real
def test_quick_tour_writes_a_report_with_plots(tmp_path, smollm):
    result = run_cli("tour", "--quick", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report == (tmp_path / "report.html").resolve()
    html = report.read_text()
    for title in ["The model and its hook points", "Extract", "logit lens", "IOI", "head", "Decompose",
                  "Interpret", "Trace and verify"]:
        assert title.lower() in html.lower(), f"section {title!r} missing from the report"
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(images) >= 8 and all(len(base64.b64decode(i)) > 5000 for i in images)  # real plots, not blanks
    found = json.loads((tmp_path / "findings.json").read_text())
    # the completion the report quotes is the model's own greedy continuation
    assert found["completion"] and found["completion"] in html
    # the graph's scores are recorded in the findings, the graph file and the report, as computed
    meta = json.loads((tmp_path / "graph" / "graph.json").read_text())["metadata"]
    for key in ("replacement_score", "completeness_score"):
        assert meta[key] == pytest.approx(found[f"graph_{key}"]) and 0.0 < meta[key] <= 1.0
        assert f"{found[f'graph_{key}']:.2f}" in html
    # in the frozen graph setting through one transcoder, single-feature ablations follow the graph's predictions
    # (through a full TopK set, downstream re-selection breaks that: bench/RESULTS.md; the report then says so)
    from mechscope.report import prose

    if found["graph_layers_covered"] == 1:
        assert found["graph_r_graph"] > 0.9
        # ablating the graph's top features moves the target more than as many random active features do
        assert abs(found["graph_top_change"]) > abs(found["graph_random_change"])
    # the report's joint-ablation verdict is the one its numbers give
    verdict = prose.group_ablation(found["graph_top_change"], found["graph_top_predicted"],
                                   found["graph_random_change"], 10)
    assert verdict.split(". ")[-1] in html
    # the live graph's check is reported beside the frozen one, as computed
    live = prose.live_graph(found["graph_r_real"], found["graph_live_r_real"], 10)
    assert live.split(", ")[-1].rstrip(".") in html and (tmp_path / "graph" / "faithfulness_live.json").is_file()
    assert found["sae_fvu"] < 0.6                 # the quick SAE already explains most of the variance
    # steering is measured against controls, and the report's verdict follows those numbers

    if found["steering_success"] is not None:
        verdict = prose.steering(found["steering_concept"], found["steering_feature"], found["steering_success"],
                                 found["steering_control_success"], found["steering_baseline_success"],
                                 found["steering_prob"], found["steering_control_prob"],
                                 found["steering_baseline_prob"], 10, mentions=found["steering_mentions"],
                                 control_mentions=found["steering_control_mentions"],
                                 baseline_mentions=found["steering_baseline_mentions"],
                                 strength=found["steering_strength"])
        assert verdict.split(". ")[-1] in html
        # the kept strength is the weakest with the most fluent mentions in the sweep the report plots
        sweep = found["steering_sweep"]
        assert found["steering_success"] == max(x["success"] for x in sweep) and found["steering_mentions"] >= \
            found["steering_success"]
    assert (tmp_path / "dictionaries" / "sae" / "dashboards" / "index.html").is_file()
    assert (tmp_path / "dictionaries" / "tour_settings.json").is_file()


@pytest.mark.real
def test_cache_command_saves_what_the_api_computes(tmp_path, smollm):
    from safetensors.torch import load_file

    result = run_cli("cache", "--prompts", "Hello world", "The capital of France is", "--names",
                     "blocks.2.resid_post", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    saved = load_file(tmp_path / "activations.safetensors")
    _, cache = smollm.run_with_cache(["Hello world", "The capital of France is"], names=["blocks.2.resid_post"])
    assert torch.equal(saved["blocks.2.resid_post"], cache["blocks.2.resid_post"])
    assert saved["attention_mask"].sum(-1).tolist() == [2, 5]
    bad = run_cli("cache", "--prompts", "hi", "--names", "blocks.99.resid_post", "--out", str(tmp_path))
    assert bad.returncode == 2 and "layers 0..29" in bad.stderr and "Traceback" not in bad.stderr


def test_optional_fields_keep_their_type():
    """``int | None`` and ``list[int] | None`` fields parse as numbers, not strings."""
    import argparse
    from dataclasses import dataclass

    from mechscope.cli.options import add_dataclass_options, dataclass_from_args

    @dataclass
    class Cfg:
        steps: int | None = None
        "how many"
        layers: list[int] | None = None
        "which"
        scale: float = 1.0
        "how much"

    parser = argparse.ArgumentParser()
    add_dataclass_options(parser, Cfg)
    cfg = dataclass_from_args(Cfg, parser.parse_args(["--steps", "3", "--layers", "1", "2", "--scale", "0.5"]))
    assert cfg == Cfg(steps=3, layers=[1, 2], scale=0.5)
    assert dataclass_from_args(Cfg, parser.parse_args([])) == Cfg()
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "many"])
