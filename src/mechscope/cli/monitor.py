"""``mechscope monitor``: watch dictionary features (with thresholds) on texts or during generation."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..validation import check_finite_fields
from .options import add_dataclass_options, dataclass_from_args


@dataclass
class MonitorConfig:
    """Feature monitor from the command line."""

    dictionary: str
    """Dictionary folder (cfg.json + sae_weights.safetensors)."""
    features: list[int]
    """Features to watch."""
    thresholds: list[float]
    """Activation threshold of each feature (one value applies to all)."""
    texts: list[str] = field(default_factory=list)
    """Texts to scan."""
    generate: str | None = None
    """A prompt to generate from while monitoring."""
    max_new_tokens: int = 30
    """Tokens generated with --generate."""
    model: str | None = None
    """Model; default: the dictionary's recorded model_name."""

    def __post_init__(self) -> None:
        check_finite_fields(self, "monitor")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not self.features:
            raise ValueError("--features needs at least one feature")
        if len(self.thresholds) not in (1, len(self.features)):
            raise ValueError(f"give one threshold or one per feature ({len(self.features)}), got "
                             f"{len(self.thresholds)}")
        bad = [t for t in self.thresholds if not t > 0]
        if bad:
            raise ValueError(f"--thresholds must be positive activations, got {bad[0]!r}")
        if not self.texts and self.generate is None:
            raise ValueError("give --texts or --generate PROMPT")
        if any(not t for t in self.texts) or self.generate == "":
            raise ValueError("texts to monitor (--texts / --generate) must not be empty")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="report where watched features fire",
                       description="Scan texts (or a generation) and report which watched features exceed their "
                                   "thresholds, where, with a score per feature (max activation / threshold).")
    add_dataclass_options(p, MonitorConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import dictionaries, load_model
    from ..features.monitor import FeatureMonitor

    cfg = dataclass_from_args(MonitorConfig, args)
    d = dictionaries.load(cfg.dictionary).eval()
    model = load_model(cfg.model or d.model_name)
    thresholds = cfg.thresholds * len(cfg.features) if len(cfg.thresholds) == 1 else cfg.thresholds
    mon = FeatureMonitor(model, d, dict(zip(cfg.features, thresholds)))
    fired = False
    for text, report in zip(cfg.texts, mon.scan(cfg.texts) if cfg.texts else []):
        print(f"{text[:60]!r}: {report.summary()}")
        fired |= report.any_fired
    if cfg.generate is not None:
        text, report = mon.generate(cfg.generate, cfg.max_new_tokens)
        print(f"generated {text!r}: {report.summary()}")
        fired |= report.any_fired
    return 0
