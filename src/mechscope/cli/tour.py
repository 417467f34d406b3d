"""``mechscope tour``: the guided tour on a built-in model, written to one HTML report."""

from __future__ import annotations

import argparse

from ..report.tour import TourConfig, run_tour
from .options import add_dataclass_options, dataclass_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tour", help="run the guided tour and write an HTML report",
                       description="The five-step workflow on a built-in model, offline; writes OUT/report.html.")
    add_dataclass_options(p, TourConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = run_tour(dataclass_from_args(TourConfig, args))
    print(f"report: {path.resolve()}")
    return 0
