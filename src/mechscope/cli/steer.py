"""``mechscope steer``: generate with and without steering toward dictionary features, side by side."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..validation import check_finite_fields
from .options import add_dataclass_options, dataclass_from_args


@dataclass
class SteerConfig:
    """Feature steering from the command line."""

    dictionary: str
    """Dictionary folder (cfg.json + sae_weights.safetensors)."""
    prompt: str
    """Prompt to continue."""
    features: list[int]
    """Features to steer toward (their decoder directions are added)."""
    model: str | None = None
    """Model; default: the dictionary's recorded model_name."""
    strength: float = 4.0
    """Multiple of each feature's max activation added."""
    db: str | None = None
    """features.db giving each feature's max activation (else --max-activation)."""
    max_activation: float | None = None
    """Max activation used for every feature when no database is given."""
    targets: list[str] = field(default_factory=list)
    """Single-token strings whose next-token probability is reported."""
    max_new_tokens: int = 30
    """Tokens generated with and without steering."""

    def __post_init__(self) -> None:
        check_finite_fields(self, "steer")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not self.prompt:
            raise ValueError("--prompt must not be empty")
        if not self.features:
            raise ValueError("--features needs at least one feature")
        if self.max_activation is not None and self.max_activation <= 0:
            raise ValueError(f"--max-activation must be positive, got {self.max_activation}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steer", help="steer generation with dictionary features",
                       description="Add strength x max activation x decoder direction of each feature at the "
                                   "dictionary's hook point; print both generations and what moved.")
    add_dataclass_options(p, SteerConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import dictionaries, load_model
    from ..features.db import FeatureDB
    from ..features.steering import feature_vector, steer

    cfg = dataclass_from_args(SteerConfig, args)
    d = dictionaries.load(cfg.dictionary).eval()
    model = load_model(cfg.model or d.model_name)
    vectors = []
    for f in cfg.features:
        if cfg.db:
            with FeatureDB(cfg.db) as db:
                max_act = db.card(f).max_act
        elif cfg.max_activation is not None:
            max_act = cfg.max_activation
        else:
            raise ValueError("give --db features.db or --max-activation to scale the steering")
        vectors.append(feature_vector(d, f, cfg.strength, max_act))
    res = steer(model, cfg.prompt, vectors, targets=cfg.targets, watch=(d, cfg.features[0]),
                max_new_tokens=cfg.max_new_tokens)
    print(res.summary())
    return 0
