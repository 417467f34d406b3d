"""From a run folder (or a dictionary folder) to ``features.db`` and dashboards, as ``mechscope features`` does.

A run folder (as mechscope training writes it: ``run.json`` and one folder per dictionary) holds the dictionary
(a folder with ``cfg.json`` and ``sae_weights.safetensors``); when it holds several, ``--dictionary`` names one
(a folder, or its name inside the run). The model defaults to the dictionary's ``model_name``, then ``run.json``.
Statistics stream over the corpus (``stdlib``, a path, or ``hf:owner/name``),
the database is built resumably and atomically, then dashboards are written for the densest live features.
"""

from __future__ import annotations

import json
import logging
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dashboards import write_dashboards
from .db import build_database
from .source import FeatureError
from .stats import StatsConfig, feature_stats

log = logging.getLogger(__name__)


@dataclass
class FeaturesConfig:
    """What ``mechscope features`` builds."""

    run: str | None = None
    """Run folder: features.db and dashboards/ are written here; its dictionary is found below it."""
    dictionary: str | None = None
    """Dictionary folder (cfg.json + sae_weights.safetensors), or its name inside the run folder when the run
    holds several."""
    model: str | None = None
    """Model (built-in name, hub id or folder); default: the dictionary's recorded model_name."""
    corpus: str = "stdlib"
    """Text source: 'stdlib' (offline Python standard library source), a file or folder, or hf:owner/name."""
    max_tokens: int = 20000
    """Tokens of the corpus to read."""
    batch_size: int = 8
    """Rows per forward pass."""
    max_length: int = 128
    """Tokens per row (longer documents are split)."""
    top_k: int = 20
    """Top-activating examples kept per feature."""
    dashboards: int = 200
    """Dashboard pages for this many of the densest live features (0: every live feature)."""

    def __post_init__(self) -> None:
        if self.run is None and self.dictionary is None:
            raise FeatureError("give a run folder or --dictionary FOLDER")
        for name in ("max_tokens", "batch_size", "max_length", "top_k"):
            if getattr(self, name) < 1:
                raise FeatureError(f"{name} must be at least 1")


def find_dictionary(run: Path) -> Path:
    """The single dictionary folder below ``run``; errors list what was found."""
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    found = sorted({p.parent for p in run.rglob("sae_weights.safetensors") if (p.parent / "cfg.json").exists()})
    if not found:
        raise FileNotFoundError(f"no dictionary (cfg.json + sae_weights.safetensors) below {run}; "
                                "pass --dictionary FOLDER")
    if len(found) > 1:
        raise FeatureError(f"{len(found)} dictionaries below {run}: choose one with --dictionary "
                           f"({', '.join(str(p) for p in found[:5])})")
    return found[0]


def corpus_texts(spec: str) -> Iterator[str]:
    """Documents of a corpus spec (the data package's sources when present, else stdlib files / a path)."""
    try:
        from ..data.sources import open_source
    except ImportError:
        open_source = None
    if open_source is not None:
        yield from open_source(spec)
        return
    root = Path(sysconfig.get_paths()["stdlib"]) if spec == "stdlib" else Path(spec)
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"corpus {spec!r} has no files")
    for f in files:
        if "site-packages" not in f.parts:
            yield f.read_text(encoding="utf-8", errors="replace")


def build_features(cfg: FeaturesConfig, model: Any = None, progress: bool = True) -> tuple[Path, Path]:
    """Compute statistics, build ``features.db`` and the dashboards; returns ``(db_path, index_path)``."""
    from .. import dictionaries
    from ..models.loading import load_model

    run = Path(cfg.run) if cfg.run else None
    if cfg.dictionary:
        folder = Path(cfg.dictionary)
        if run is not None and not folder.exists() and (run / cfg.dictionary).exists():
            folder = run / cfg.dictionary  # a dictionary named inside the run folder
    else:
        folder = find_dictionary(run)
    d = dictionaries.load(folder).eval()
    out = run if run is not None else folder
    run_model = None
    if run is not None and (run / "run.json").exists():  # written by mechscope training
        run_model = json.loads((run / "run.json").read_text()).get("model")
    name = cfg.model or d.model_name or run_model
    if model is None:
        if not name:
            raise FeatureError("the dictionary records no model_name: pass --model")
        model = load_model(name)
    stats = feature_stats(model, d, corpus_texts(cfg.corpus), StatsConfig(top_k=cfg.top_k),
                          batch_size=cfg.batch_size, max_length=cfg.max_length, max_tokens=cfg.max_tokens,
                          progress=progress)
    stats.meta["dictionary"] = str(folder)
    db_path = build_database(out / "features.db", stats, model, d, progress=progress)
    live = [f for f in range(stats.d_sae) if stats.active_count[f] > 0]
    live.sort(key=lambda f: -float(stats.frequency[f]))
    pages = live if cfg.dashboards == 0 else live[:cfg.dashboards]
    index = write_dashboards(db_path, out / "dashboards", features=pages)
    log.info("features: %d live of %d; db %s; dashboards %s", len(live), stats.d_sae, db_path, index)
    return db_path, index
