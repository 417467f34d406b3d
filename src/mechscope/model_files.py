"""Checks of model files before ``transformers`` reads them, so a damaged file is named instead of failing deep
inside a reader with a raw ``struct`` / reshape / safetensors error.

- :func:`check_gguf`: the header of a ``.gguf`` file (magic, version, counts, every metadata entry, every tensor's
  shape, type and byte range) against the file's size. Empty files, absurd counts and truncated files are refused.
- :func:`check_safetensors`: the header of a ``.safetensors`` file (length, JSON, dtype, shape and byte range of
  every tensor) against the file's size.
- :func:`check_model_folder`: every weight file of a Hugging Face model folder (``*.safetensors``, and the shards
  named by ``model.safetensors.index.json``) plus ``config.json``.

Each raises :class:`ModelFileError` (a ``ValueError``) whose message names the file and what is wrong. Only headers
are read (no tensor data), so a check costs milliseconds even for large files. This module imports nothing from
mechscope; ``load_model`` is meant to call :func:`check_model_source` before loading.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import BinaryIO

GGUF_MAGIC = b"GGUF"
GGML_MAX_DIMS = 4
MAX_SAFETENSORS_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


class ModelFileError(ValueError):
    """A model file that is empty, truncated, corrupt or not of the format its name says; the message names it."""


# ------------------------------------------------------------------------------------------------------ GGUF
# value type -> struct format of one scalar (8: string, 9: array are handled apart)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _ggml_block_sizes() -> dict[int, tuple[int, int]]:
    """ggml tensor type -> (elements per block, bytes per block)."""
    try:
        from gguf.constants import GGML_QUANT_SIZES

        return {int(k): (int(v[0]), int(v[1])) for k, v in GGML_QUANT_SIZES.items()}
    except ImportError:  # the common types, from ggml.h
        return {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
                9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
                15: (256, 292), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)}


class _Reader:
    """Little-endian reads from a file that fail with :class:`ModelFileError` past its end."""

    def __init__(self, f: BinaryIO, path: Path, size: int):
        self.f, self.path, self.size = f, path, size

    @property
    def left(self) -> int:
        return self.size - self.f.tell()

    def read(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise ModelFileError(f"GGUF file {self.path} is truncated: {what} needs {n} bytes at offset "
                                 f"{self.f.tell()}, the file ends {self.left} bytes later")
        return self.f.read(n)

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        return struct.unpack("<" + fmt, self.read(struct.calcsize(fmt), what))[0]

    def skip(self, n: int, what: str) -> None:
        if n > self.left:
            self.read(n, what)  # raises
        self.f.seek(n, os.SEEK_CUR)

    def string(self, what: str, counts: str) -> str:
        n = int(self.unpack(counts, f"the length of {what}"))
        return self.read(n, what).decode("utf-8", errors="replace")


def _skip_value(r: _Reader, vtype: int, key: str, counts: str) -> None:
    if vtype in _GGUF_SCALARS:
        r.skip(struct.calcsize(_GGUF_SCALARS[vtype]), f"the value of {key!r}")
    elif vtype == _GGUF_STRING:
        r.string(f"the value of {key!r}", counts)
    elif vtype == _GGUF_ARRAY:
        item = int(r.unpack("I", f"the item type of {key!r}"))
        n = int(r.unpack(counts, f"the length of {key!r}"))
        if item in _GGUF_SCALARS:
            r.skip(n * struct.calcsize(_GGUF_SCALARS[item]), f"the {n} values of {key!r}")
        elif item == _GGUF_STRING:
            if n * 8 > r.left:
                raise ModelFileError(f"GGUF file {r.path}: metadata {key!r} claims {n} strings, more than the "
                                     f"{r.left} bytes left in the file can hold")
            for i in range(n):
                r.string(f"string {i} of {key!r}", counts)
        else:
            raise ModelFileError(f"GGUF file {r.path}: metadata {key!r} is an array of unknown type {item}")
    else:
        raise ModelFileError(f"GGUF file {r.path}: metadata {key!r} has unknown value type {vtype}")


def check_gguf(path: str | os.PathLike[str]) -> None:
    """Refuse (:class:`ModelFileError`, naming ``path``) a GGUF file that is empty, truncated or inconsistent."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"GGUF file {path} is empty (0 bytes)")
    with open(path, "rb") as f:
        r = _Reader(f, path, size)
        if r.read(min(4, size), "the magic number") != GGUF_MAGIC:
            raise ModelFileError(f"{path} is not a GGUF file (it does not start with b'GGUF')")
        version = int(r.unpack("I", "the version"))
        if version not in (1, 2, 3):
            raise ModelFileError(f"GGUF file {path} has version {version}; readable versions are 1, 2 and 3")
        counts = "I" if version == 1 else "Q"
        n_tensors = int(r.unpack(counts, "the tensor count"))
        n_kv = int(r.unpack(counts, "the metadata count"))
        # every entry takes at least this many bytes: an impossible count is refused before reading on
        min_kv, min_tensor = struct.calcsize(counts) + 4 + 1, struct.calcsize(counts) + 4 + 8 + 4 + 8
        if n_kv * min_kv + n_tensors * min_tensor > r.left:
            raise ModelFileError(f"GGUF file {path} claims {n_tensors} tensors and {n_kv} metadata entries, more "
                                 f"than its {size} bytes can hold (truncated or corrupt)")
        alignment = 32
        for i in range(n_kv):
            key = r.string(f"the key of metadata entry {i}", counts)
            vtype = int(r.unpack("I", f"the type of {key!r}"))
            if key == "general.alignment" and vtype == 4:
                alignment = int(r.unpack("I", "general.alignment"))
                if alignment < 1 or alignment & (alignment - 1):
                    raise ModelFileError(f"GGUF file {path}: general.alignment {alignment} is not a power of two")
            else:
                _skip_value(r, vtype, key, counts)
        blocks = _ggml_block_sizes()
        tensors = []
        for i in range(n_tensors):
            name = r.string(f"the name of tensor {i}", counts)
            n_dims = int(r.unpack("I", f"the rank of tensor {name!r}"))
            if not 1 <= n_dims <= GGML_MAX_DIMS:
                raise ModelFileError(f"GGUF file {path}: tensor {name!r} has {n_dims} dimensions (1..4 allowed)")
            dims = [int(r.unpack(counts, f"the shape of tensor {name!r}")) for _ in range(n_dims)]
            ggml_type = int(r.unpack("I", f"the type of tensor {name!r}"))
            offset = int(r.unpack("Q", f"the offset of tensor {name!r}"))
            if ggml_type not in blocks:
                raise ModelFileError(f"GGUF file {path}: tensor {name!r} has unknown ggml type {ggml_type}")
            block, nbytes = blocks[ggml_type]
            n = math.prod(dims)
            if n % block:
                raise ModelFileError(f"GGUF file {path}: tensor {name!r} has {n} elements, not a multiple of its "
                                     f"type's block of {block}")
            tensors.append((name, offset, n // block * nbytes))
        start = -(-f.tell() // alignment) * alignment
    for name, offset, nbytes in tensors:
        if offset % alignment:
            raise ModelFileError(f"GGUF file {path}: tensor {name!r} starts at offset {offset}, not aligned to "
                                 f"{alignment}")
        if start + offset + nbytes > size:
            raise ModelFileError(f"GGUF file {path} is truncated: tensor {name!r} needs bytes up to "
                                 f"{start + offset + nbytes}, the file has {size}")


# ------------------------------------------------------------------------------------------------ safetensors
_ST_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2,
              "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1,
              "F6_E3M2": 1, "C64": 8}


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """Refuse (:class:`ModelFileError`, naming ``path``) a safetensors file that is truncated or corrupt."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise ModelFileError(f"safetensors file {path} is {'empty' if size == 0 else 'truncated'} ({size} bytes)")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise ModelFileError(f"safetensors file {path} is truncated or corrupt: its header claims {n} bytes, "
                                 f"the file has {size}")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelFileError(f"safetensors file {path} is corrupt: its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"safetensors file {path} is corrupt: its header is not a JSON object")
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            expected = math.prod(int(d) for d in shape) * _ST_DTYPES[dtype]
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"safetensors file {path} is corrupt: tensor {name!r} has a malformed entry "
                                 f"{str(info)[:200]}") from None
        if dtype not in ("F4", "F6_E2M3", "F6_E3M2") and end - begin != expected:
            raise ModelFileError(f"safetensors file {path} is corrupt: tensor {name!r} {dtype} {shape} needs "
                                 f"{expected} bytes, its entry gives {end - begin}")
        if not 0 <= begin <= end or end > data:
            raise ModelFileError(f"safetensors file {path} is truncated: tensor {name!r} ends at byte {end} of the "
                                 f"data, which has {data} bytes")


def check_model_folder(folder: str | os.PathLike[str]) -> None:
    """Check ``config.json`` and every safetensors weight file of a Hugging Face model folder."""
    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ModelFileError(f"{config} is not valid JSON: {e}") from None
    files = set(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise ModelFileError(f"{index} is not a valid safetensors index: {e}") from None
        for shard in sorted(shards):
            p = folder / shard
            if not p.is_file():
                raise ModelFileError(f"{index} names the weight file {shard}, which is missing from {folder}")
            files.add(p)
    for p in sorted(files):
        check_safetensors(p)


def check_model_source(path: str | os.PathLike[str]) -> None:
    """:func:`check_gguf` for a ``.gguf`` file, :func:`check_model_folder` for a folder; nothing else is checked."""
    path = Path(path)
    if path.suffix == ".gguf" and path.is_file():
        check_gguf(path)
    elif path.is_dir():
        check_model_folder(path)
