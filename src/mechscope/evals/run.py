"""Evaluate dictionaries (in memory or a training run folder) and write ``eval.json`` + ``eval.png``."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from torch import Tensor

from ..data.packing import PackConfig, pack, special_ids
from ..data.sources import open_source
from ..dictionaries import Dictionary
from ..dictionaries import load as load_dictionary
from .downstream import evaluate_many
from .metrics import ReconstructionStats
from .report import DictionaryEval, EvalReport, plot_eval

log = logging.getLogger(__name__)


def evaluate(model, dicts: dict[str, Dictionary], contexts: Callable[[], Iterable[Tensor]] | list[Tensor], *,
             model_batch: int = 8, exclude_special: bool = True, dense_threshold: float = 0.1,
             source: str | None = None) -> EvalReport:
    """Reconstruction and downstream metrics of each dictionary over the same token contexts."""
    exclude = special_ids(model.tokenizer) if exclude_special and model.tokenizer is not None else []
    report = EvalReport(model=model.cfg.name, source=source)
    ctx = list(contexts() if callable(contexts) else contexts)
    stats = {name: ReconstructionStats(d, dense_threshold) for name, d in dicts.items()}
    downs = evaluate_many(model, dicts, ctx, model_batch=model_batch, exclude=exclude, stats=stats)
    for name, d in dicts.items():
        report.add(name, d, DictionaryEval(stats[name].result(), downs[name]))
        log.info("%s: fvu %.4f, ce recovered %.4f", name, report.dictionaries[name].reconstruction.fvu,
                 downs[name].ce_recovered)
    return report


def held_out_contexts(run: dict, tokenizer, n_contexts: int) -> list[Tensor]:
    """``n_contexts`` contexts after those the training run consumed (per the ``data`` entry of run.json)."""
    data = run["data"]
    pack_cfg = PackConfig(**data["pack"])
    rows_per_context = max(1, pack_cfg.context_size - 1)
    skip = (int(run["tokens"]) + int(data.get("buffer_rows", 0))) // rows_per_context + 1
    contexts = list(itertools.islice(pack(open_source(data["source"]), tokenizer, pack_cfg), skip, skip + n_contexts))
    if not contexts:
        raise ValueError(f"corpus {data['source']!r} has no contexts left after the {skip} used for training")
    return contexts


def evaluate_run(run_dir: str | os.PathLike[str], *, model=None, n_contexts: int = 64, model_batch: int = 8,
                 plot: bool = True, only: list[str] | None = None) -> EvalReport:
    """Recompute ``RUN/eval.json`` (and ``eval.png``) for the dictionaries of a training run (``only``: a subset)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: no run.json")
    run = json.loads(meta_path.read_text())
    if model is None:
        import mechscope as ms

        model = ms.load_model(run["model"])
    names = only if only is not None else [n for n, s in zip(run["dictionaries"], run.get("specs", []))
                                           if s.get("arch") not in ("crosscoder", "clt")] or run["dictionaries"]
    dicts = {name: load_dictionary(run_dir / name) for name in names}
    if "data" not in run:
        raise ValueError(f"{meta_path} has no 'data' entry: cannot rebuild the evaluation corpus")
    contexts = held_out_contexts(run, model.tokenizer, n_contexts)
    report = evaluate(model, dicts, contexts, model_batch=model_batch, source=run["data"]["source"])
    report.write(run_dir / "eval.json")
    if plot:
        plot_eval(report, run_dir / "eval.png")
    return report
