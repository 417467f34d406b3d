"""Atomic checkpoints: tensors in safetensors, everything else in JSON (never pickle).

A checkpoint is a folder ``checkpoints/step_00000100/`` holding ``state.safetensors`` (dictionary weights, Adam
moments, dead-latent counters, the torch RNG state) and ``state.json`` (step, rows seen, names, config). It is
written into a temporary folder that is renamed into place, so a killed run never leaves a half checkpoint; the
latest complete folder is the one :func:`latest_checkpoint` returns.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

log = logging.getLogger(__name__)

PREFIX = "step_"


def save_checkpoint(folder: str | os.PathLike[str], step: int, tensors: dict[str, Tensor], state: dict[str, Any],
                    *, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``folder`` atomically; keep the ``keep`` newest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:08d}"
    tmp = folder / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().cpu().clone() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", final)
    return final


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and (p / "state.json").is_file() and (p / "state.safetensors").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, state)`` of one checkpoint folder."""
    path = Path(path)
    return load_file(str(path / "state.safetensors")), json.loads((path / "state.json").read_text())


def rng_tensors() -> dict[str, Tensor]:
    """The global torch RNG states as tensors (CPU, and CUDA where present)."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(tensors: dict[str, Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
