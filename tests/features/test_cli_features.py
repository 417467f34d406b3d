"""The feature subcommands as a user runs them (in-process through ``main``)."""

from __future__ import annotations

import pytest

from mechscope.cli.main import main
from mechscope.features import FeatureDB

pytestmark = pytest.mark.real


def test_features_steer_monitor_commands(smol_sae, tmp_path, capsys):
    run = tmp_path / "run"
    smol_sae.sae.save(run / "sae")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(smol_sae.texts[:4]))
    assert main(["features", str(run), "--corpus", str(corpus), "--max-tokens", "300", "--max-length", "64",
                 "--dashboards", "5"]) == 0
    out = capsys.readouterr().out
    assert "features.db" in out and (run / "dashboards" / "index.html").exists()
    with FeatureDB(run / "features.db") as db:
        live = db.by_density(1e-9, 1.0, limit=1)
        assert live and db.meta["hook_names"] == ["blocks.8.resid_post"]
    f = live[0][0]
    assert main(["steer", "--dictionary", str(run / "sae"), "--prompt", "x =", "--features", str(f), "--db",
                 str(run / "features.db"), "--max-new-tokens", "2"]) == 0
    assert f"feature {f}" in capsys.readouterr().out
    with FeatureDB(run / "features.db") as db:
        top = db.card(f).top_examples[0]
    text = top.text()  # where feature f reached its top activation
    assert main(["monitor", "--dictionary", str(run / "sae"), "--features", str(f), "--thresholds",
                 str(top.activation / 4), "--texts", text]) == 0
    assert f"fired: [{f}]" in capsys.readouterr().out
    assert main(["monitor", "--dictionary", str(run / "sae"), "--features", str(f), "--thresholds",
                 str(top.activation * 10), "--texts", text]) == 0
    assert "fired: none" in capsys.readouterr().out  # the summary says 'fired' only for features that did
    # user mistakes: one clear line, exit code 2
    assert main(["features", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["monitor", "--dictionary", str(run / "sae"), "--features", "9999", "--thresholds", "1",
                 "--texts", "hello"]) == 2
    assert "out of range" in capsys.readouterr().err
