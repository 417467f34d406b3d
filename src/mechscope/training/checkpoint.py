"""Atomic, verified checkpoints: tensors in safetensors, everything else in JSON (never pickle).

A checkpoint is a folder ``checkpoints/step_00000100/`` holding ``state.safetensors`` (dictionary weights, Adam
moments, dead-latent counters, the torch RNG state) and ``state.json`` (step, rows seen, names, config, the run's
id and the sha256 of ``state.safetensors``). It is written and fsynced into a temporary folder that is renamed into
place, so a killed run never leaves a half checkpoint under a ``step_`` name.

Reading verifies the checksum, so a truncated or damaged file is reported (:class:`CheckpointError`, naming the
file) instead of being half-read. Pruning keeps the ``keep`` newest checkpoints *of the same run* (``run_id``):
checkpoints that belong to another run, or whose state cannot be read, are never counted as this run's older ones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..files import atomic_folder, sha256_file

log = logging.getLogger(__name__)

PREFIX = "step_"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
_STEP_DIR = re.compile(rf"^{PREFIX}(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated or corrupt file); the message names the file."""


def save_checkpoint(folder: str | os.PathLike[str], step: int, tensors: dict[str, Tensor], state: dict[str, Any],
                    *, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``folder`` atomically; keep the ``keep`` newest of the same ``run_id``."""
    folder = Path(folder)
    final = folder / f"{PREFIX}{step:08d}"
    with atomic_folder(final) as tmp:  # a hidden sibling, fsynced and renamed into place (never a half step_N)
        save_file({k: v.detach().cpu().clone() for k, v in tensors.items()}, str(tmp / STATE_TENSORS))
        digest = sha256_file(tmp / STATE_TENSORS)
        (tmp / STATE_JSON).write_text(json.dumps({**state, "step": step, "sha256": digest}, indent=1))
    run_id = state.get("run_id")
    mine = [p for p in list_checkpoints(folder) if run_id is None or _run_id(p) == run_id]
    for old in mine[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", final)
    return final


def _run_id(path: Path) -> str | None:
    try:
        state = json.loads((path / STATE_JSON).read_text())
    except (OSError, ValueError):
        return None
    return state.get("run_id") if isinstance(state, dict) else None


def checkpoint_dirs(folder: str | os.PathLike[str]) -> list[Path]:
    """Every ``step_N`` folder (complete or not), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint folders holding both files, oldest first (their content is checked by :func:`load_checkpoint`)."""
    return [p for p in checkpoint_dirs(folder) if (p / STATE_JSON).is_file() and (p / STATE_TENSORS).is_file()]


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint folder holding both files (not verified; see :func:`latest_valid_checkpoint`)."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, state)`` of one checkpoint folder, verified; :class:`CheckpointError` names a bad file."""
    path = Path(path)
    state_path, tensor_path = path / STATE_JSON, path / STATE_TENSORS
    for p in (state_path, tensor_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} is missing")
    try:
        state = json.loads(state_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file {state_path} is truncated or corrupt: {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"checkpoint file {state_path} holds no checkpoint state (no integer 'step')")
    expected = state.get("sha256")
    if expected is not None and sha256_file(tensor_path) != expected:
        raise CheckpointError(f"checkpoint file {tensor_path} is truncated or corrupt (its sha256 differs from the "
                              f"one recorded in {STATE_JSON})")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as e:  # safetensors raises SafetensorError / OSError depending on the damage
        raise CheckpointError(f"checkpoint file {tensor_path} is truncated or corrupt: {e}") from None
    return tensors, state


def latest_valid_checkpoint(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Tensor], dict[str, Any]] | None:
    """The newest checkpoint that loads, with its ``(tensors, state)``; damaged newer ones are skipped (logged).

    None when ``folder`` holds no checkpoint at all; :class:`CheckpointError` naming every file when none is valid.
    """
    problems = []
    for path in reversed(checkpoint_dirs(folder)):
        try:
            tensors, state = load_checkpoint(path)
        except CheckpointError as e:
            log.warning("skipping checkpoint %s: %s", path.name, e)
            problems.append(str(e))
            continue
        return path, tensors, state
    if problems:
        raise CheckpointError(f"no valid checkpoint in {folder}: " + "; ".join(problems))
    return None


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
