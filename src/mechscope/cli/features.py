"""``mechscope features RUN``: feature statistics, ``RUN/features.db`` and ``RUN/dashboards/`` for a dictionary."""

from __future__ import annotations

import argparse

from ..data.specs import SOURCE_HELP
from ..features.pipeline import FeaturesConfig, build_features
from .options import add_dataclass_options, dataclass_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="feature statistics, database and dashboards for a dictionary",
                       description="Stream a corpus through the model and a dictionary; write RUN/features.db "
                                   "(SQLite, searchable) and RUN/dashboards/index.html.")
    p.add_argument("run_folder", nargs="?", metavar="RUN", help="run folder (holds the dictionary and the outputs)")
    add_dataclass_options(p, FeaturesConfig, skip=("run",))
    for action in p._actions:  # the corpus spec grammar is the data package's (named corpora, mixtures, splits)
        if action.dest == "corpus":
            action.help = f"{SOURCE_HELP} (default: {action.default})"
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = dataclass_from_args(FeaturesConfig, args, run=args.run_folder)
    db, index = build_features(cfg)
    print(f"database: {db.resolve()}\ndashboards: {index.resolve()}")
    return 0
