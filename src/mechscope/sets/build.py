"""Build a model's transcoder set: one TopK (skip) transcoder per MLP, all trained from one live harvest.

    folder = build_transcoder_set(SetConfig(model="smollm2-135m"))    # mechscope dictionaries build / make dictionaries

One forward pass per batch records ``blocks.L.mlp_in`` and ``blocks.L.mlp_out`` at every layer, and the
multi-dictionary trainer steps all transcoders on the same rows. The run checkpoints every ``checkpoint_every``
steps into ``<set>/run``; calling the builder again with the same settings resumes it (an interrupted build loses at
most one checkpoint interval). When training ends the set is exported (SAELens folders and a circuit-tracer set),
evaluated on held-out text (each layer spliced alone, and the whole replacement model), and ``manifest.json`` is
written last; see :mod:`.store` for the layout.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..activations.store import ActivationStore, StoreConfig
from ..data import PackConfig, open_source, pack, special_ids
from ..dictionaries import Dictionary, save_transcoder_set
from ..evals.downstream import evaluate_many
from ..evals.metrics import ReconstructionStats
from ..evals.replacement import evaluate_replacement
from ..files import atomic_write_text
from ..training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train
from ..training.checkpoint import latest_checkpoint
from ..training.config import check_row_norm_cap
from .store import FORMAT_VERSION, MANIFEST, file_checksums, set_dir

log = logging.getLogger(__name__)


@dataclass
class SetConfig:
    """Settings of a transcoder-set build (recorded in its manifest; a resumed build must use the same ones)."""

    model: str = "smollm2-135m"
    """Model name (built-in, hub id or local folder) whose MLPs get transcoders."""
    source: str = "mixture"
    """Training text (a source spec of mechscope.data.open_source); evaluation reads SOURCE@heldout."""
    tokens: int = 600_000
    """Training rows (tokens) seen by every transcoder."""
    expansion: int = 8
    """Latents per model dimension."""
    k: int = 32
    """Active latents per token (TopK)."""
    skip: bool = True
    """Skip transcoders (a linear path beside the latents, Paulo et al. 2025): better fidelity at the same L0."""
    lr: float = 2.4e-3
    """Peak learning rate (Adam). Higher than a long run would use: at a few hundred thousand tokens transcoders are
    still far from converged, and bench/frontier.py measured 3x the SAE rate to help them most."""
    batch_size: int = 1024
    """Rows per training step. At a few hundred thousand tokens more, smaller steps beat fewer large ones: at layers
    6 and 11 with 240k tokens, 1024-row batches recovered 0.885 / 0.896 of the CE loss against 0.789 / 0.785 with
    4096 (bench/RESULTS.md)."""
    row_norm_cap: float | None = 8.0
    """Rows whose output norm exceeds this multiple of the batch median weigh like rows of that norm
    (``LoopConfig.row_norm_cap``): the massive activations some MLPs write (layer 11 of smollm2-135m) otherwise
    dominate the loss and leave most latents dead."""
    buffer_rows: int = 16384
    """Rows in the shuffling buffer (all layers' inputs and outputs are held, in bfloat16)."""
    context_size: int = 128
    """Tokens per packed context."""
    checkpoint_every: int = 40
    """Steps between checkpoints."""
    eval_contexts: int = 32
    """Held-out contexts for the per-layer and whole-replacement evaluation."""
    seed: int = 0
    """Seed of initialisation and data shuffling."""

    def __post_init__(self) -> None:
        for name in ("tokens", "expansion", "k", "batch_size", "buffer_rows", "context_size", "checkpoint_every",
                     "eval_contexts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SetConfig.{name} must be a positive integer, got {value!r}")
        check_row_norm_cap("SetConfig", self.row_norm_cap)
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise ValueError(f"SetConfig.lr must be a finite positive number, got {self.lr!r}")
        if self.buffer_rows < self.batch_size:
            raise ValueError(f"SetConfig.buffer_rows ({self.buffer_rows}) must be at least batch_size")

    @property
    def steps(self) -> int:
        return max(1, self.tokens // self.batch_size)


def _specs(cfg: SetConfig, n_layers: int) -> list[DictionarySpec]:
    arch = "skip_transcoder" if cfg.skip else "transcoder"
    return [DictionarySpec(arch, hook=f"blocks.{layer}.mlp_in", hook_out=f"blocks.{layer}.mlp_out",
                           activation="topk", k=cfg.k, expansion=cfg.expansion, name=f"layer_{layer:02d}")
            for layer in range(n_layers)]


def _check_resumable(folder: Path, cfg: SetConfig) -> bool:
    """True when ``folder/run`` holds a checkpoint of a build with the same settings; raises on other settings."""
    if latest_checkpoint(folder / "run" / "checkpoints") is None:
        return False
    started = folder / "build.json"
    previous = json.loads(started.read_text()) if started.is_file() else None
    if previous != dataclasses.asdict(cfg):
        raise ValueError(f"{folder} holds an unfinished build with other settings ({previous}); "
                         "pass overwrite=True (--overwrite) to start again")
    return True


@torch.no_grad()
def evaluate_set(model: Any, transcoders: list[Dictionary], contexts: list[torch.Tensor]) -> dict[str, Any]:
    """Per layer (each spliced alone) and whole-replacement metrics, as written to ``eval.json``."""
    exclude = special_ids(model.tokenizer) if model.tokenizer is not None else []
    named = {f"layer_{i:02d}": tc for i, tc in enumerate(transcoders)}
    stats = {name: ReconstructionStats(tc) for name, tc in named.items()}
    downs = evaluate_many(model, named, contexts, model_batch=8, exclude=exclude, stats=stats)
    layers = []
    for i, name in enumerate(named):
        rec = stats[name].result()
        layers.append({"layer": i, "fvu": rec.fvu, "l0": rec.l0, "dead_fraction": rec.dead_fraction,
                       "ce_recovered": downs[name].ce_recovered, "ce_spliced": downs[name].ce_spliced,
                       "ce_zero": downs[name].ce_zero, "kl": downs[name].kl})
    whole = evaluate_replacement(model, transcoders, contexts, exclude=exclude)
    return {"tokens": whole.tokens, "ce_clean": whole.ce_clean, "layers": layers, "replacement": whole.to_json()}


def build_transcoder_set(cfg: SetConfig | None = None, *, folder: str | os.PathLike[str] | None = None,
                         model: Any = None, overwrite: bool = False) -> Path:
    """Train, export, evaluate and register a transcoder set (see module docstring); returns its folder."""
    import mechscope as ms

    cfg = cfg or SetConfig()
    folder = Path(folder) if folder is not None else set_dir(cfg.model)
    if (folder / MANIFEST).exists() and not overwrite:
        log.info("%s is already built", folder)
        return folder
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    model = model or ms.load_model(cfg.model)
    run_dir = folder / "run"
    resume = _check_resumable(folder, cfg)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # a build stopped before its first checkpoint: nothing to keep
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "build.json", json.dumps(dataclasses.asdict(cfg), indent=1))
    specs = _specs(cfg, model.cfg.n_layers)
    hooks = [h for s in specs for h in (s.hook, s.hook_out)]
    pack_cfg = PackConfig(context_size=cfg.context_size)
    store_cfg = StoreConfig(batch_size=cfg.batch_size, buffer_rows=cfg.buffer_rows, model_batch=16,
                            dtype="bfloat16", seed=cfg.seed)
    store = ActivationStore.from_model(model, lambda: pack(open_source(cfg.source), model.tokenizer, pack_cfg), hooks,
                                       store_cfg)
    train_cfg = TrainConfig(optim=OptimConfig(lr=cfg.lr, warmup_steps=min(20, cfg.steps // 10)),
                            loop=LoopConfig(steps=cfg.steps, seed=cfg.seed, log_every=1,
                                            checkpoint_every=cfg.checkpoint_every, keep_checkpoints=1,
                                            row_norm_cap=cfg.row_norm_cap))
    meta = {"data": {"source": cfg.source, "pack": dataclasses.asdict(pack_cfg), "buffer_rows": cfg.buffer_rows},
            "set": dataclasses.asdict(cfg)}
    t0 = time.time()
    result = train(store, specs, train_cfg, out=run_dir, model_name=cfg.model, resume=resume, meta=meta)
    train_s = time.time() - t0
    transcoders = [result.dictionaries[s.folder_name()] for s in specs]
    saelens = folder / "saelens"
    for s, tc in zip(specs, transcoders):
        tc.save(saelens / s.folder_name(), fold=True)
        shutil.rmtree(run_dir / s.folder_name(), ignore_errors=True)  # the run's own copy; saelens/ is the set's
    save_transcoder_set(transcoders, folder / "circuit_tracer", model_name=cfg.model)
    t1 = time.time()
    heldout = cfg.source if "@" in cfg.source else f"{cfg.source}@heldout"
    contexts = list(itertools.islice(pack(open_source(heldout), model.tokenizer, pack_cfg), cfg.eval_contexts))
    evaluation = evaluate_set(model, transcoders, contexts)
    atomic_write_text(folder / "eval.json", json.dumps(evaluation, indent=1))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    manifest = {"format_version": FORMAT_VERSION, "model": cfg.model, "d_model": int(model.cfg.d_model),
                "n_layers": int(model.cfg.n_layers), "settings": dataclasses.asdict(cfg),
                "architecture": specs[0].arch, "steps": result.steps, "tokens": result.tokens,
                "train_minutes": round(train_s / 60, 1), "eval_minutes": round((time.time() - t1) / 60, 1),
                "replacement": evaluation["replacement"], "files": file_checksums(folder)}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1))
    log.info("transcoder set written to %s", folder)
    return folder
