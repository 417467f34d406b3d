"""The training loop: several dictionaries from one activation stream, metrics, checkpoints, resume.

    store = ActivationStore.from_model(model, contexts, ["blocks.6.resid_post"], StoreConfig(batch_size=4096))
    result = train(store, [DictionarySpec("topk", hook="blocks.6.resid_post", k=32)], TrainConfig(), out="runs/a")

Run folder: ``<name>/`` (each trained dictionary, SAELens layout), ``metrics.jsonl`` (one line per logged step
and dictionary: ``{"step", "tokens", "dictionary", "loss", "mse", "fvu", "l0", "lr", "dead_fraction", ...}``),
``checkpoints/step_*/`` and ``run.json`` (the specs and config).

Resume (``resume=True``) loads the newest valid checkpoint and replays the deterministic activation stream up to
it without training, so the run continues on exactly the batches it would have seen: the final weights equal those
of an uninterrupted run with the same seed. (Replaying a live harvest re-runs the model; from a disk cache it only
reads.) Runs are never mixed:

- a new run refuses a run folder that already holds files unless ``resume=True`` or ``overwrite=True`` (which
  first removes the old run's artifacts, and refuses a folder holding anything else);
- a resume compares the run's settings (dictionary specs, training config, model, data description, activation
  store config, world size) with the checkpoint's and refuses any difference, naming each one; only the length
  and cadence fields ``loop.steps``, ``loop.log_every``, ``loop.checkpoint_every`` and ``loop.keep_checkpoints``
  may change, and each change is logged as a warning;
- a truncated or corrupt newest checkpoint is skipped (logged, and renamed ``invalid-step_N`` once the run has
  resumed from an older one); when none is valid, :class:`~.checkpoint.CheckpointError` names every file;
- every run has a ``run_id`` (kept across resumes) and checkpoints are pruned only among those of the same run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..activations.store import ActivationStore
from ..dictionaries import Dictionary
from ..files import atomic_write_json, atomic_write_text
from ..validation import check_finite_fields
from .checkpoint import (
    CheckpointError,
    checkpoint_dirs,
    latest_valid_checkpoint,
    load_checkpoint,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from .config import DictionarySpec, TrainConfig
from .distributed import DistInfo, all_reduce, barrier
from .trainer import DictionaryTrainer, build_dictionary

log = logging.getLogger(__name__)

Callback = Callable[[int, "Run"], None]
"""Called as ``callback(step, run)`` after every step (raise to stop the run)."""


class RunFolderError(ValueError):
    """A run folder that holds another run (or other files), or a resume whose settings differ from the run's."""


#: Settings a resume may change (each change is logged); every other difference refuses the resume.
RESUME_OVERRIDABLE = ("config.loop.steps", "config.loop.log_every", "config.loop.checkpoint_every",
                      "config.loop.keep_checkpoints")
#: Files and folders a training run writes into its folder (besides one folder per dictionary).
RUN_ARTIFACTS = ("checkpoints", "metrics.jsonl", "run.json", "eval.json", "eval.png")
TRACKER_FOLDERS = ("tensorboard", "wandb")
"""Where ``mechscope train --tensorboard / --wandb`` log by default; its trackers start before the run, so these are
neither run artifacts nor foreign files to the emptiness check (like an activation cache)."""


def _is_activation_cache(path: Path) -> bool:
    """An activation cache (``--cache`` inside the run folder): a manifest here or in rank sub-folders."""
    from ..activations.shards import MANIFEST

    if not path.is_dir():
        return False
    return (path / MANIFEST).is_file() or any((c / MANIFEST).is_file() for c in path.iterdir() if c.is_dir())


def _run_entries(out: Path) -> tuple[list[Path], list[Path]]:
    """``(run artifacts, other entries)`` in ``out`` (hidden entries and activation caches are neither)."""
    if not out.is_dir():
        return [], []
    ours: list[Path] = []
    other: list[Path] = []
    for p in sorted(out.iterdir()):
        if p.name.startswith(".") or p.name in TRACKER_FOLDERS or _is_activation_cache(p):
            continue
        is_dictionary = p.is_dir() and (p / "cfg.json").is_file()
        is_features = p.name.startswith("features.db") or p.name == "dashboards"
        (ours if p.name in RUN_ARTIFACTS or is_dictionary or is_features else other).append(p)
    return ours, other


def check_run_folder(out: str | os.PathLike[str] | None, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse (:class:`RunFolderError`) to start a new run in a folder that already holds files.

    ``resume=True`` continues the run there, ``overwrite=True`` replaces it (see :func:`clear_run_folder`). Called by
    :func:`train` and, before any expensive work, by ``mechscope train``.
    """
    if resume and overwrite:
        raise RunFolderError("resume and overwrite exclude each other: resume continues the run in the folder, "
                             "overwrite replaces it")
    if out is None:
        if resume:
            raise RunFolderError("resume=True needs the run folder (out=) holding the checkpoints")
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"run folder {out} exists and is not a folder")
    ours, other = _run_entries(out)
    if overwrite:
        if other:
            raise RunFolderError(f"refusing to overwrite {out}: besides a training run's files it holds "
                                 f"{', '.join(p.name for p in other[:8])}; remove them or choose another folder")
        return
    if (ours or other) and not resume:
        names = ", ".join(p.name for p in (ours + other)[:8])
        raise RunFolderError(f"run folder {out} is not empty (it holds {names}): pass resume=True (--resume) to "
                             f"continue the run there or overwrite=True (--overwrite) to replace it")


def clear_run_folder(out: str | os.PathLike[str]) -> list[str]:
    """Remove a previous run's artifacts from ``out`` (after :func:`check_run_folder` with ``overwrite=True``)."""
    ours, _ = _run_entries(Path(out))
    for p in ours:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if ours:
        log.warning("overwrite: removed the previous run's %s from %s", ", ".join(p.name for p in ours), out)
    return [p.name for p in ours]


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _flatten(x: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(x, dict) and x:
        for k, v in x.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(x, list) and x and any(isinstance(v, (dict, list)) for v in x):
        for i, v in enumerate(x):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = x
    return out


_ABSENT = object()


def identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``[(setting, old value, new value)]`` between two run identities (settings absent from ``old``, written by an
    older mechscope, are not compared)."""
    a, b = _flatten(_jsonable(old), "", {}), _flatten(_jsonable(new), "", {})
    tops = {k.split(".")[0].split("[")[0] for k in a}
    keys = sorted(set(a) | {k for k in b if k.split(".")[0].split("[")[0] in tops})
    return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in keys if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def _show(v: Any) -> str:
    return "absent" if v is _ABSENT else repr(v)


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

    def view(self):
        """Interactive view (:mod:`mechscope.display`): steps, tokens, the run folder, and each dictionary's
        metrics at the last logged step (a table; hover a number for its full value). The curves are in the run's
        ``metrics.jsonl`` (``mechscope report`` or a tracker draws them)."""
        from .. import display

        if not self.dictionaries:
            return display.empty("training run", "no dictionary was trained")
        keys = sorted({k for m in self.metrics.values() for k in m if k != "step"})
        rows = [[name, d.architecture, d.cfg.hook_name, d.cfg.d_sae, *(self.metrics.get(name, {}).get(k) for k in keys)]
                for name, d in self.dictionaries.items()]
        return display.panel(f"training run: {self.steps} steps", [
            display.table(["dictionary", "arch", "hook", "d_sae", *keys], rows, title="last logged metrics")],
            summary=[("steps", self.steps), ("tokens", self.tokens), ("run folder", str(self.out or "–"))])

    def _repr_html_(self) -> str:
        return self.view().html()


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
        check_finite_fields(cfg, "TrainConfig")
        for i, spec in enumerate(specs):
            check_finite_fields(spec, f"DictionarySpec[{i}]")
        self.store, self.specs, self.cfg, self.model_name = store, list(specs), cfg, model_name
        self.out = Path(out) if out is not None else None
        self.info = info or DistInfo()
        self.meta = dict(meta or {})
        self.trainers: dict[str, DictionaryTrainer] = {}
        self.step = 0
        self.tokens = 0
        self.widths: dict[str, int] = {}
        self.last: dict[str, dict[str, float]] = {}
        self.run_id = uuid.uuid4().hex[:16]
        """Identifies this run's checkpoints (kept across resumes); pruning never touches another run's."""
        self.overrides: dict[str, list[Any]] = {}
        """Settings a resume changed: ``{setting: [checkpoint value, new value]}`` (recorded in run.json)."""

    def identity(self) -> dict[str, Any]:
        """The settings that define this run; a resume must match them (see module docstring)."""
        return {"specs": [dataclasses.asdict(s) for s in self.specs], "config": dataclasses.asdict(self.cfg),
                "model": self.model_name, "meta": self.meta, "store": dataclasses.asdict(self.store.cfg),
                "world_size": self.info.world_size}

    # ------------------------------------------------------------------ setup
    def _build(self, widths: dict[str, int]) -> None:
        self.widths = widths
        torch.manual_seed(self.cfg.loop.seed)
        for spec in self.specs:
            d = build_dictionary(spec, widths, self.model_name)
            self.trainers[spec.folder_name()] = DictionaryTrainer(spec, d, self.cfg, self.info)

    def _check_same_run(self, state: dict[str, Any], ckpt: Path) -> None:
        """Refuse a checkpoint of other settings (naming each difference); log the allowed overrides."""
        old: dict[str, Any] = {k: state[k] for k in ("specs", "config", "model", "meta", "store", "world_size")
                               if k in state}
        diffs = identity_differences(old, self.identity())
        refused = [d for d in diffs if d[0] not in RESUME_OVERRIDABLE]
        if refused:
            lines = "; ".join(f"{k}: {_show(a)} in the checkpoint, {_show(b)} now" for k, a, b in refused[:12])
            more = f" (and {len(refused) - 12} more)" if len(refused) > 12 else ""
            raise RunFolderError(
                f"cannot resume the run in {self.out}: its checkpoint {ckpt.name} was written with other settings: "
                f"{lines}{more}. Resume with the run's settings, or pass overwrite=True (--overwrite) to start a new "
                f"run there")
        if int(state["step"]) > self.cfg.loop.steps:
            raise RunFolderError(f"cannot resume the run in {self.out}: its checkpoint {ckpt.name} is at step "
                                 f"{state['step']}, beyond loop.steps={self.cfg.loop.steps}")
        for k, a, b in diffs:
            log.warning("resuming %s with %s = %s (the checkpoint has %s)", self.out, k, _show(b), _show(a))
            self.overrides[k] = [a, b]
        if any(k == "config.loop.steps" for k, _, _ in diffs):
            log.warning("the learning-rate schedule follows the new loop.steps from step %s on", state["step"])

    def _restore(self, ckpt: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """Rebuild the trainers from a loaded checkpoint; :class:`CheckpointError` if it does not fit them."""
        try:
            self._build({str(k): int(v) for k, v in state["widths"].items()})
            for i, tr in enumerate(self.trainers.values()):
                tr.load_state_tensors(tensors, f"d{i}.")
            restore_rng(tensors)
            self.step, self.tokens = int(state["step"]), int(state["tokens"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            self.trainers = {}
            raise CheckpointError(f"checkpoint {ckpt} does not hold the state of these dictionaries "
                                  f"({e.__class__.__name__}: {e})") from None

    def _resume(self, batches: Iterator[dict[str, Tensor]]) -> bool:
        """Continue from the newest valid checkpoint; False when the folder holds none (a new run starts)."""
        assert self.out is not None
        folder = self.out / "checkpoints"
        candidates = list(reversed(checkpoint_dirs(folder)))
        if not candidates:
            log.info("no checkpoint in %s: starting a new run", folder)
            return False
        problems: list[str] = []
        skipped: list[Path] = []
        resumed: Path | None = None
        for ckpt in candidates:
            try:
                tensors, state = load_checkpoint(ckpt)
                self._check_same_run(state, ckpt)  # a RunFolderError is not a damaged file: it stops the resume
                self._restore(ckpt, tensors, state)
            except CheckpointError as e:
                log.warning("skipping checkpoint %s: %s", ckpt, e)
                problems.append(str(e))
                skipped.append(ckpt)
                continue
            resumed = ckpt
            self.run_id = str(state.get("run_id") or self.run_id)
            break
        if resumed is None:
            raise CheckpointError(f"cannot resume: no valid checkpoint in {folder}: " + "; ".join(problems))
        barrier(self.info)  # every rank has read its checkpoint before rank 0 renames the damaged ones
        if self.info.is_main:
            for bad in skipped:
                aside = bad.with_name(f"invalid-{bad.name}")
                if aside.exists():
                    shutil.rmtree(aside, ignore_errors=True)
                os.replace(bad, aside)
                log.warning("renamed the damaged checkpoint %s to %s", bad, aside.name)
        for _ in tqdm(range(self.step), desc="replay data", disable=not self.info.is_main or None, leave=False):
            next(batches)
        log.info("resumed from %s at step %d", resumed, self.step)
        return True

    # ------------------------------------------------------------------ io
    def _metrics_file(self) -> Path | None:
        return self.out / "metrics.jsonl" if self.out and self.info.is_main else None

    def _truncate_metrics(self) -> None:
        path = self._metrics_file()
        if path and path.is_file():
            keep = []
            for ln in path.read_text(errors="replace").splitlines():
                try:
                    if json.loads(ln)["step"] <= self.step:
                        keep.append(ln)
                except (ValueError, KeyError, TypeError):  # a line cut short by a killed run
                    continue
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))  # a kill here keeps the old file

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
                     "run_id": self.run_id, **self.identity()}
            save_checkpoint(self.out / "checkpoints", self.step, tensors, state, keep=self.cfg.loop.keep_checkpoints)
        barrier(self.info)

    def export(self) -> dict[str, Dictionary]:
        """Trained dictionaries in original units; saved under the run folder by rank 0."""
        result = {name: tr.export() for name, tr in self.trainers.items()}
        if self.out and self.info.is_main:
            for name, d in result.items():
                d.save(self.out / name, fold=True)  # a plain SAELens file computing the same function
            atomic_write_json(self.out / "run.json", {
                "model": self.model_name, "hook_points": self.store.hook_names, "steps": self.step,
                "tokens": self.tokens, "world_size": self.info.world_size, "dictionaries": list(result),
                "specs": [dataclasses.asdict(s) for s in self.specs], "config": dataclasses.asdict(self.cfg),
                "store": dataclasses.asdict(self.store.cfg), "run_id": self.run_id,
                **({"resume_overrides": self.overrides} if self.overrides else {}), **self.meta}, indent=1)
        return result

    # ------------------------------------------------------------------ loop
    def fit(self, *, resume: bool = False, overwrite: bool = False, callbacks: Sequence[Callback] = ()
            ) -> TrainResult:
        """Train to ``cfg.loop.steps`` (see module docstring for ``resume`` and ``overwrite``)."""
        loop = self.cfg.loop
        check_run_folder(self.out, resume=resume, overwrite=overwrite)
        barrier(self.info)  # every rank has looked at the folder before rank 0 changes it
        if self.out and self.info.is_main:
            if overwrite:
                clear_run_folder(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.info)
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
          overwrite: bool = False, info: DistInfo | None = None, callbacks: Sequence[Callback] = (),
          meta: dict[str, Any] | None = None) -> TrainResult:
    """Train one or several dictionaries from ``store`` (see module docstring); ``meta`` is added to run.json.

    ``out`` must be empty (or new) unless ``resume=True`` (continue the run there, with the same settings) or
    ``overwrite=True`` (remove the previous run's files first).
    """
    specs = [specs] if isinstance(specs, DictionarySpec) else list(specs)
    run = Run(store, specs, cfg or TrainConfig(), out=out, model_name=model_name, info=info, meta=meta)
    return run.fit(resume=resume, overwrite=overwrite, callbacks=callbacks)


def export_checkpoint(out: str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None, *,
                      model_name: str | None = None, meta: dict[str, Any] | None = None) -> dict[str, Dictionary]:
    """Save the dictionaries of a checkpoint (default: the newest in ``out/checkpoints``) into the run folder.

    For a run that was stopped before its end: no data is needed, and ``run.json`` is written as :func:`train`
    writes it (so ``mechscope eval`` works on the folder).
    """
    out = Path(out)
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        tensors, state = load_checkpoint(ckpt)
    else:
        found = latest_valid_checkpoint(out / "checkpoints")  # skips (and logs) damaged newer checkpoints
        if found is None:
            raise FileNotFoundError(f"no checkpoint under {out / 'checkpoints'}")
        ckpt, tensors, state = found
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
    atomic_write_json(out / "run.json", {
        "model": model_name, "hook_points": sorted(state["widths"]), "steps": state["step"], "tokens": state["tokens"],
        "world_size": 1, "dictionaries": list(result), "specs": state["specs"], "config": state["config"],
        "checkpoint": ckpt.name, **(meta or state.get("meta") or {})}, indent=1)
    return result


def state_summary(result: TrainResult) -> dict[str, Any]:
    """A JSON-ready summary of a result (steps, tokens, last metrics)."""
    return {"steps": result.steps, "tokens": result.tokens, "metrics": result.metrics}
