"""``mechscope explain``: explain and score features of a feature database with an LLM (autointerp)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .options import add_dataclass_options, dataclass_from_args


@dataclass
class ExplainConfig:
    """Autointerp from the command line; explanations and scores are stored in the database."""

    db: str
    """features.db to read examples from and write explanations to."""
    features: list[int]
    """Features to explain."""
    base_url: str | None = None
    """OpenAI-compatible endpoint (http://host:port/v1); default: run the local model in-process."""
    llm: str = "smollm2-135m"
    """Model name sent to the endpoint, or the local chat model to load."""
    api_key: str | None = None
    """Bearer token for the endpoint, if it needs one."""
    n_explain: int = 6
    """Top examples shown to the explainer."""
    n_score: int = 4
    """Held-out examples per scorer."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain and score features with an LLM",
                       description="Explain each feature from its top examples, score the explanation with the "
                                   "detection and fuzzing scorers on held-out examples, store both in the database.")
    add_dataclass_options(p, ExplainConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..features.autointerp import AutointerpConfig, interpret
    from ..features.db import FeatureDB
    from ..features.llm import LocalClient, OpenAIClient

    cfg = dataclass_from_args(ExplainConfig, args)
    client = (OpenAIClient(cfg.base_url, cfg.llm, cfg.api_key) if cfg.base_url else LocalClient(cfg.llm))
    ai = AutointerpConfig(n_explain=cfg.n_explain, n_score=cfg.n_score, n_negative=cfg.n_score)
    with FeatureDB(cfg.db) as db:
        for f in cfg.features:
            res = interpret(client, db, f, ai)
            db.set_explanation(f, res.explanation, res.scores, status=res.status)
            if res.explanation is None:
                print(f"feature {f}: no usable explanation from the model (status {res.status}; nothing scored)")
                continue
            scores = "; ".join(f"{k}: precision {v['precision']:.2f} recall {v['recall']:.2f} auroc {v['auroc']:.2f}"
                               f" on {v['n']} examples" + (f", {v['n_unparsed']} unparseable replies left out"
                                                           if v.get("n_unparsed") else "")
                               for k, v in res.scores.items())
            print(f"feature {f}: {res.explanation}\n  {scores or 'not scored'} (status {res.status})")
    return 0
