"""Damaged model files (GGUF, safetensors, config.json) are refused with an error that names the file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mechscope.model_files import ModelFileError, check_gguf, check_model_folder, check_model_source, check_safetensors
from tiny import save_model_dir


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    gguf = pytest.importorskip("gguf")
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_token_list(["<s>", "a", "b", "c"])
    w.add_tensor("token_embd.weight", np.arange(4 * 8, dtype=np.float32).reshape(4, 8))
    w.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _variant(src: Path, tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_a_valid_gguf_passes(gguf_file):
    check_gguf(gguf_file)
    check_model_source(gguf_file)


def test_damaged_gguf_files_name_the_file(gguf_file, tmp_path):
    data = gguf_file.read_bytes()
    header_end = data.index(b"blk.0.attn_q.weight") + 40
    cases = {
        "empty.gguf": (b"", "empty"),
        "magic.gguf": (b"GGML" + data[4:], "not a GGUF file"),
        "version.gguf": (data[:4] + struct.pack("<I", 99) + data[8:], "version 99"),
        "tensors.gguf": (data[:8] + struct.pack("<Q", 2**60) + data[16:], "claims 1152921504606846976 tensors"),
        "kv.gguf": (data[:16] + struct.pack("<Q", 2**40) + data[24:], "more than its"),
        "cut_header.gguf": (data[:30], "truncated"),
        "cut_in_tensor_infos.gguf": (data[:header_end], "truncated"),
        "cut_data.gguf": (data[:-10], "truncated: tensor 'blk.0.attn_q.weight'"),
        "short.gguf": (data[:6], "truncated"),
    }
    for name, (blob, match) in cases.items():
        path = _variant(gguf_file, tmp_path, name, blob)
        with pytest.raises(ModelFileError, match=match) as err:
            check_gguf(path)
        assert str(path) in str(err.value), name


def test_absurd_array_lengths_and_string_lengths_are_refused(gguf_file, tmp_path):
    data = bytearray(gguf_file.read_bytes())
    key = b"tokenizer.ggml.tokens"
    at = data.index(key) + len(key) + 4 + 4  # after the key, the value type (array) and the item type (string)
    data[at:at + 8] = struct.pack("<Q", 2**50)
    path = _variant(gguf_file, tmp_path, "array.gguf", bytes(data))
    with pytest.raises(ModelFileError, match="claims 1125899906842624 strings") as err:
        check_gguf(path)
    assert str(path) in str(err.value)
    data = bytearray(gguf_file.read_bytes())
    at = data.index(b"general.architecture") - 8  # the key's length field
    data[at:at + 8] = struct.pack("<Q", 2**40)
    with pytest.raises(ModelFileError, match="truncated"):
        check_gguf(_variant(gguf_file, tmp_path, "keylen.gguf", bytes(data)))


def test_model_folders_with_damaged_weights_or_config(tmp_path):
    good = save_model_dir(tmp_path / "good")
    check_model_folder(good)
    check_model_source(good)
    weights = good / "model.safetensors"
    data = weights.read_bytes()
    for name, blob, match in [("half", data[: len(data) // 2], "truncated"), ("empty", b"", "empty"),
                              ("header", data[:8] + b"{not json" + data[17:], "not valid JSON"),
                              ("length", struct.pack("<Q", 2**62) + data[8:], "header claims")]:
        folder = save_model_dir(tmp_path / name) if not (tmp_path / name).exists() else tmp_path / name
        (folder / "model.safetensors").write_bytes(blob)
        with pytest.raises(ModelFileError, match=match) as err:
            check_model_folder(folder)
        assert str(folder / "model.safetensors") in str(err.value), name
        with pytest.raises(ModelFileError):
            check_safetensors(folder / "model.safetensors")
    (good / "config.json").write_text('{"model_type": ')
    with pytest.raises(ModelFileError, match="config.json is not valid JSON"):
        check_model_folder(good)


def test_load_model_names_a_damaged_file(tmp_path):
    import mechscope as ms

    folder = save_model_dir(tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError, match="model.safetensors is truncated"):
        ms.load_model(folder)
    (tmp_path / "x.gguf").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"x.gguf is empty"):
        ms.load_model(tmp_path / "x.gguf")


@pytest.mark.parametrize("name", [None, "", "   "])
def test_load_model_without_a_name_fails_at_once(name):
    import time

    import mechscope as ms

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="load_model needs a model"):
        ms.load_model(name)
    assert time.perf_counter() - t0 < 1.0  # no hub lookup, no folder scan
    with pytest.raises(TypeError, match="got int"):
        ms.load_model(123)
