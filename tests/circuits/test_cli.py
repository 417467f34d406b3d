"""The attribute and acdc subcommands end to end (tiny saved model; the cached induction toy)."""

from __future__ import annotations

import json

from .helpers import random_transcoders
from tiny import save_model_dir

from mechscope.cli.main import main
from mechscope.dictionaries import save_transcoder_set


def test_attribute_cli_writes_graph_json(tmp_path):
    model_dir = save_model_dir(tmp_path / "model")
    import mechscope as ms

    model = ms.load_model(str(model_dir))
    save_transcoder_set(random_transcoders(model), tmp_path / "tc", model_name="tiny")
    out = tmp_path / "out"
    rc = main(["attribute", "--model", str(model_dir), "--transcoders", str(tmp_path / "tc"), "--out", str(out),
               "--max-feature-nodes", "40", "--batch-size", "20", "hello"])
    assert rc == 0
    data = json.loads((out / "graph.json").read_text())
    assert data["metadata"]["prompt"] == "hello" and data["nodes"] and data["links"]
    assert (out / "graph" / "graph.safetensors").is_file()


def test_attribute_cli_one_line_error_for_missing_transcoders(tmp_path, capsys):
    rc = main(["attribute", "--transcoders", str(tmp_path / "nope"), "hi"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_acdc_cli_on_induction_toy(tmp_path, induction_model):
    rc = main(["acdc", "--out", str(tmp_path), "--threshold", "0.05", "--n-prompts", "8", "--no-include-mlps"])
    assert rc == 0
    data = json.loads((tmp_path / "edges.json").read_text())
    assert data["edges"] and data["recovered"] > 0.8
    assert (tmp_path / "circuit.png").stat().st_size > 1000
