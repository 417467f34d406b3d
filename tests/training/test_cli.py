"""``mechscope train`` / ``mechscope eval`` end to end on a tiny local model and a local JSONL corpus."""

import json
from pathlib import Path

import pytest

from mechscope.cli.main import main
from tiny import save_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    lines = [json.dumps({"text": f"def f{i}(x):\n    return x * {i} + {i * i}  # doc {i}\n"}) for i in range(400)]
    path.write_text("\n".join(lines))
    return path


def test_train_then_eval(model_dir: Path, corpus: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = ["train", "--model", str(model_dir), "--hook", "blocks.1.resid_post", "blocks.0.resid_post",
            "--arch", "topk", "--k", "4", "--expansion", "2", "--source", str(corpus), "--context-size", "16",
            "--batch-size", "64", "--buffer-rows", "256", "--model-batch", "4", "--steps", "6", "--log-every", "2",
            "--checkpoint-every", "3", "--warmup-steps", "2", "--eval-contexts", "4", "--out", str(run)]
    assert main(argv) == 0
    names = ["topk_blocks.1.resid_post", "topk_blocks.0.resid_post"]
    for name in names:
        cfg = json.loads((run / name / "cfg.json").read_text())
        assert cfg["d_sae"] == 64 and cfg["k"] == 4
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3 * 2
    assert (run / "checkpoints" / "step_00000006").is_dir()
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["dictionaries"]) == set(names)
    assert ev["dictionaries"][names[0]]["downstream"]["tokens"] > 0
    (run / "eval.json").unlink()
    capsys.readouterr()
    assert main(["eval", str(run), "--contexts", "2", "--no-plot"]) == 0
    assert (run / "eval.json").is_file()
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_train_rejects_bad_option(model_dir: Path, tmp_path: Path) -> None:
    argv = ["train", "--model", str(model_dir), "--hook", "blocks.1.resid_post", "--k", "0", "--out",
            str(tmp_path / "r")]
    assert main(argv) == 2


def test_train_from_an_activation_cache(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    argv = ["train", "--model", str(model_dir), "--hook", "blocks.1.resid_post", "--arch", "relu", "--expansion", "2",
            "--source", str(corpus), "--context-size", "16", "--batch-size", "64", "--buffer-rows", "128",
            "--steps", "4", "--eval-contexts", "0", "--cache", str(tmp_path / "acts"), "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["tokens"] >= 4 * 64
    assert (tmp_path / "run" / "relu_blocks.1.resid_post" / "cfg.json").is_file()


@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--sparsity-coefficient", "-inf"),
                                         ("--beta1", "nan"), ("--resample-scale", "inf")])
def test_train_refuses_non_finite_numbers(model_dir: Path, tmp_path: Path, capsys, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--model", str(model_dir), "--hook", "blocks.1.resid_post", f"{flag}={value}", "--out",
              str(tmp_path / "r")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "not a finite number" in err
    assert not (tmp_path / "r").exists()


def test_train_refuses_a_run_folder_before_loading_anything(tmp_path: Path, capsys) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    argv = ["train", "--model", str(tmp_path / "no-such-model"), "--hook", "blocks.1.resid_post", "--out",
            str(tmp_path / "r")]
    assert main(argv) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main([*argv, "--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err
