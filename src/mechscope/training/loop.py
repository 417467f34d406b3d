"""The training loop: several dictionaries from one activation stream, metrics, checkpoints, resume.

    store = ActivationStore.from_model(model, contexts, ["blocks.6.resid_post"], StoreConfig(batch_size=4096))
    result = train(store, [DictionarySpec("topk", hook="blocks.6.resid_post", k=32)], TrainConfig(), out="runs/a")

Run folder: ``<name>/`` (each trained dictionary, SAELens layout), ``metrics.jsonl`` (one line per logged step
and dictionary: ``{"step", "tokens", "dictionary", "loss", "mse", "fvu", "l0", "lr", "dead_fraction", ...}``),
``checkpoints/step_*/`` and ``run.json`` (the specs and config).

Resume (``resume=True``) loads the newest checkpoint and replays the deterministic activation stream up to it
without training, so the run continues on exactly the batches it would have seen: the final weights equal those of
an uninterrupted run with the same seed. (Replaying a live harvest re-runs the model; from a disk cache it only
reads.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..activations.store import ActivationStore
from ..dictionaries import Dictionary
from .checkpoint import latest_checkpoint, load_checkpoint, restore_rng, rng_tensors, save_checkpoint
from .config import DictionarySpec, TrainConfig
from .distributed import DistInfo, all_reduce, barrier
from .trainer import DictionaryTrainer, build_dictionary

log = logging.getLogger(__name__)

Callback = Callable[[int, "Run"], None]
"""Called as ``callback(step, run)`` after every step (raise to stop the run)."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    dictionaries: dict[str, Dictionary]
    """Folder name -> trained dictionary (original activation units, eval mode)."""
    steps: int
    """Steps completed."""
    tokens: int
    """Activation rows consumed over all ranks."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """Folder name -> metrics of the last logged step."""
    out: Path | None = None
    """The run folder, if any."""


class Run:
    """State of one training run (see module docstring); :func:`train` is the usual entry point."""

    def __init__(self, store: ActivationStore, specs: Sequence[DictionarySpec], cfg: TrainConfig, *,
                 out: str | os.PathLike[str] | None = None, model_name: str | None = None,
                 info: DistInfo | None = None, meta: dict[str, Any] | None = None):
        if not specs:
            raise ValueError("train at least one dictionary: pass a non-empty list of DictionarySpec")
        names = [s.folder_name() for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"dictionary names must be unique, got {names}; set DictionarySpec.name")
        missing = sorted({h for s in specs for h in s.hooks_in + s.hooks_out} - set(store.hook_names))
        if missing:
            raise ValueError(f"hook point(s) {missing} are not in the activation store ({store.hook_names})")
        self.store, self.specs, self.cfg, self.model_name = store, list(specs), cfg, model_name
        self.out = Path(out) if out is not None else None
        self.info = info or DistInfo()
        self.meta = dict(meta or {})
        self.trainers: dict[str, DictionaryTrainer] = {}
        self.step = 0
        self.tokens = 0
        self.widths: dict[str, int] = {}
        self.last: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ setup
    def _build(self, widths: dict[str, int]) -> None:
        self.widths = widths
        torch.manual_seed(self.cfg.loop.seed)
        for spec in self.specs:
            d = build_dictionary(spec, widths, self.model_name)
            self.trainers[spec.folder_name()] = DictionaryTrainer(spec, d, self.cfg, self.info)

    def _resume(self, batches: Iterator[dict[str, Tensor]]) -> bool:
        ckpt = latest_checkpoint(self.out / "checkpoints") if self.out else None
        if ckpt is None:
            return False
        tensors, state = load_checkpoint(ckpt)
        self._build(state["widths"])
        for i, (name, tr) in enumerate(self.trainers.items()):
            tr.load_state_tensors(tensors, f"d{i}.")
        restore_rng(tensors)
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        for _ in tqdm(range(self.step), desc="replay data", disable=not self.info.is_main or None, leave=False):
            next(batches)
        log.info("resumed from %s at step %d", ckpt, self.step)
        return True

    # ------------------------------------------------------------------ io
    def _metrics_file(self) -> Path | None:
        return self.out / "metrics.jsonl" if self.out and self.info.is_main else None

    def _truncate_metrics(self) -> None:
        path = self._metrics_file()
        if path and path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= self.step]
            path.write_text("".join(ln + "\n" for ln in keep))

    def _log(self, local: dict[str, dict[str, float]], bar: tqdm) -> None:
        path = self._metrics_file()
        for name, m in local.items():
            keys = sorted(m)
            vals = all_reduce(torch.tensor([m[k] for k in keys], dtype=torch.float64), self.info, "mean")
            m = dict(zip(keys, vals.tolist()))
            self.last[name] = m
            if path:
                with path.open("a") as fh:
                    fh.write(json.dumps({"step": self.step, "tokens": self.tokens, "dictionary": name, **m}) + "\n")
        first = next(iter(self.last.values()))
        log.info("step %d/%d, %d tokens: loss %.4g, l0 %.1f, dead %.3f", self.step, self.cfg.loop.steps, self.tokens,
                 first["loss"], first["l0"], first["dead_fraction"])
        bar.set_postfix(loss=f"{first['loss']:.4g}", l0=f"{first['l0']:.1f}", dead=f"{first['dead_fraction']:.2f}")

    def checkpoint(self) -> None:
        """Write a checkpoint of the current step (rank 0; every rank waits for it)."""
        if self.out and self.info.is_main:
            tensors = rng_tensors()
            for i, tr in enumerate(self.trainers.values()):
                tensors.update(tr.state_tensors(f"d{i}."))
            state = {"tokens": self.tokens, "widths": self.widths, "names": list(self.trainers),
                     "model": self.model_name, "meta": self.meta,
                     "specs": [dataclasses.asdict(s) for s in self.specs], "config": dataclasses.asdict(self.cfg)}
            save_checkpoint(self.out / "checkpoints", self.step, tensors, state, keep=self.cfg.loop.keep_checkpoints)
        barrier(self.info)

    def export(self) -> dict[str, Dictionary]:
        """Trained dictionaries in original units; saved under the run folder by rank 0."""
        result = {name: tr.export() for name, tr in self.trainers.items()}
        if self.out and self.info.is_main:
            for name, d in result.items():
                d.save(self.out / name, fold=True)  # a plain SAELens file computing the same function
            (self.out / "run.json").write_text(json.dumps({
                "model": self.model_name, "hook_points": self.store.hook_names, "steps": self.step,
                "tokens": self.tokens, "world_size": self.info.world_size, "dictionaries": list(result),
                "specs": [dataclasses.asdict(s) for s in self.specs], "config": dataclasses.asdict(self.cfg),
                **self.meta}, indent=1))
        return result

    # ------------------------------------------------------------------ loop
    def fit(self, *, resume: bool = False, callbacks: Sequence[Callback] = ()) -> TrainResult:
        """Train to ``cfg.loop.steps`` (see module docstring for ``resume``)."""
        loop = self.cfg.loop
        if self.out and self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        batches = self.store.batches()
        first: dict[str, Tensor] | None = None
        if not (resume and self._resume(batches)):
            first = next(batches)
            self._build({h: int(t.shape[-1]) for h, t in first.items()})
            for tr in self.trainers.values():
                tr.initialise(first)
            if self.out and self.info.is_main and (self.out / "metrics.jsonl").exists():
                (self.out / "metrics.jsonl").unlink()
        self._truncate_metrics()
        bar = tqdm(total=loop.steps, initial=self.step, desc="train", unit="step",
                   disable=not self.info.is_main or None)
        while self.step < loop.steps:
            try:
                batch = first if first is not None else next(batches)
            except StopIteration:
                log.warning("activation stream ended after %d steps (asked for %d)", self.step, loop.steps)
                break
            first = None
            local = {name: tr.step(batch, self.step) for name, tr in self.trainers.items()}
            self.step += 1
            self.tokens += next(iter(batch.values())).shape[0] * self.info.world_size
            bar.update(1)
            if self.step % loop.log_every == 0 or self.step == loop.steps:
                self._log(local, bar)
            if loop.checkpoint_every and self.step % loop.checkpoint_every == 0:
                self.checkpoint()
            for cb in callbacks:
                cb(self.step, self)
        bar.close()
        if not (loop.checkpoint_every and self.step % loop.checkpoint_every == 0):
            self.checkpoint()
        return TrainResult(self.export(), self.step, self.tokens, dict(self.last), self.out)


def train(store: ActivationStore, specs: DictionarySpec | Sequence[DictionarySpec], cfg: TrainConfig | None = None,
          *, out: str | os.PathLike[str] | None = None, model_name: str | None = None, resume: bool = False,
          info: DistInfo | None = None, callbacks: Sequence[Callback] = (), meta: dict[str, Any] | None = None
          ) -> TrainResult:
    """Train one or several dictionaries from ``store`` (see module docstring); ``meta`` is added to run.json."""
    specs = [specs] if isinstance(specs, DictionarySpec) else list(specs)
    run = Run(store, specs, cfg or TrainConfig(), out=out, model_name=model_name, info=info, meta=meta)
    return run.fit(resume=resume, callbacks=callbacks)


def export_checkpoint(out: str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None, *,
                      model_name: str | None = None, meta: dict[str, Any] | None = None) -> dict[str, Dictionary]:
    """Save the dictionaries of a checkpoint (default: the newest in ``out/checkpoints``) into the run folder.

    For a run that was stopped before its end: no data is needed, and ``run.json`` is written as :func:`train`
    writes it (so ``mechscope eval`` works on the folder).
    """
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint is not None else latest_checkpoint(out / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint under {out / 'checkpoints'}")
    tensors, state = load_checkpoint(ckpt)
    cfg = TrainConfig(**state["config"])
    specs = [DictionarySpec(**s) for s in state["specs"]]
    model_name = model_name or state.get("model")
    torch.manual_seed(cfg.loop.seed)
    result: dict[str, Dictionary] = {}
    for i, spec in enumerate(specs):
        tr = DictionaryTrainer(spec, build_dictionary(spec, state["widths"], model_name), cfg, DistInfo())
        tr.load_state_tensors(tensors, f"d{i}.")
        result[spec.folder_name()] = d = tr.export()
        d.save(out / spec.folder_name(), fold=True)
    (out / "run.json").write_text(json.dumps({
        "model": model_name, "hook_points": sorted(state["widths"]), "steps": state["step"], "tokens": state["tokens"],
        "world_size": 1, "dictionaries": list(result), "specs": state["specs"], "config": state["config"],
        "checkpoint": ckpt.name, **(meta or state.get("meta") or {})}, indent=1))
    return result


def state_summary(result: TrainResult) -> dict[str, Any]:
    """A JSON-ready summary of a result (steps, tokens, last metrics)."""
    return {"steps": result.steps, "tokens": result.tokens, "metrics": result.metrics}
