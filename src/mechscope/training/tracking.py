"""Experiment tracking: mirror a training run's metrics to Weights & Biases or TensorBoard.

``metrics.jsonl`` in the run folder stays the record of the run; a tracker is a callback of :func:`train` that
sends the same numbers (the metrics of each logged step, per dictionary, as ``<dictionary>/<metric>``) to a
dashboard, and :func:`replay` sends an existing ``metrics.jsonl`` after the fact.

    # pip install 'mechscope[tracking]'
    with WandbTracker(project="mechscope", mode="offline", dir="runs/a") as tracker:
        train(store, spec, cfg, out="runs/a", callbacks=[tracker])
    with TensorBoardTracker("runs/a/tensorboard") as tracker:
        train(store, spec, cfg, out="runs/a", callbacks=[tracker])
    replay("runs/a/metrics.jsonl", TensorBoardTracker("runs/a/tensorboard"))

Only the main rank logs under ``torchrun``. The optional packages are imported when a tracker is created, with an
error naming the extra to install.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

SKIP = ("step", "tokens", "dictionary")
"""Keys of a metrics line that are not metrics."""


class TrackerError(RuntimeError):
    """A tracking backend is missing or failed to start."""


class Tracker:
    """Base tracker: a ``callback(step, run)`` for :func:`train` that forwards each logged step's metrics.

    Subclasses implement :meth:`log_metrics` and :meth:`close`. A tracker closes itself after the run's last
    step, and on leaving a ``with`` block.
    """

    def __init__(self) -> None:
        self._last_logged = -1
        self.closed = False

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Record the run's configuration (specs and training config) once; a no-op where unsupported."""

    def __call__(self, step: int, run: Any) -> None:
        if self.closed or not getattr(run.info, "is_main", True):
            return
        loop = run.cfg.loop
        if self._last_logged < 0:
            import dataclasses

            self.log_config({"model": run.model_name, "config": dataclasses.asdict(run.cfg),
                             "specs": [dataclasses.asdict(s) for s in run.specs]})
        if step != self._last_logged and (step % loop.log_every == 0 or step == loop.steps):
            flat = {f"{name}/{k}": float(v) for name, m in run.last.items() for k, v in m.items() if k not in SKIP}
            flat["tokens"] = float(run.tokens)
            self.log_metrics(flat, step)
            self._last_logged = step
        if step >= loop.steps:
            self.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()


class WandbTracker(Tracker):
    """Weights & Biases (``mode="offline"`` writes a run folder that ``wandb sync`` uploads later)."""

    def __init__(self, project: str = "mechscope", *, name: str | None = None,
                 mode: Literal["offline", "online", "disabled"] = "offline",
                 dir: str | os.PathLike[str] | None = None, **init_kwargs: Any):
        super().__init__()
        try:
            import wandb
        except ImportError as e:
            raise TrackerError("Weights & Biases tracking needs wandb: pip install 'mechscope[tracking]'") from e
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"mode must be 'offline', 'online' or 'disabled', got {mode!r}")
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(project=project, name=name, mode=mode, dir=None if dir is None else str(dir),
                                  reinit="create_new", **init_kwargs)
        except Exception as e:  # wandb raises its own error types for auth, service start-up, ...
            raise TrackerError(f"wandb.init failed ({type(e).__name__}: {e})") from e

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self) -> None:
        if not self.closed:
            self.run.finish()
        super().close()


class TensorBoardTracker(Tracker):
    """TensorBoard event files in ``log_dir`` (``tensorboard --logdir`` shows them)."""

    def __init__(self, log_dir: str | os.PathLike[str]):
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise TrackerError("TensorBoard tracking needs tensorboard: pip install 'mechscope[tracking]'") from e
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.writer.add_text("config", "```\n" + json.dumps(dict(config), indent=1, default=str) + "\n```", 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if not self.closed:
            self.writer.flush()
            self.writer.close()
        super().close()


def read_metrics(path: str | os.PathLike[str]) -> dict[int, dict[str, float]]:
    """``metrics.jsonl`` as ``{step: {"<dictionary>/<metric>": value, "tokens": n}}``."""
    steps: dict[int, dict[str, float]] = {}
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step, name = int(row["step"]), str(row["dictionary"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: line {i + 1} is not a metrics line ({e})") from e
        out = steps.setdefault(step, {})
        out.update({f"{name}/{k}": float(v) for k, v in row.items() if k not in SKIP and isinstance(v, (int, float))})
        out["tokens"] = float(row.get("tokens", 0))
    return steps


def replay(path: str | os.PathLike[str], tracker: Tracker) -> int:
    """Send every step of an existing ``metrics.jsonl`` to ``tracker`` and close it; returns the steps sent."""
    steps = read_metrics(path)
    try:
        for step in sorted(steps):
            tracker.log_metrics(steps[step], step)
    finally:
        tracker.close()
    return len(steps)


__all__ = ["SKIP", "TensorBoardTracker", "Tracker", "TrackerError", "WandbTracker", "read_metrics", "replay"]
