"""``mechscope report RUN``: one self-contained HTML page (RUN/report.html) for a run folder.

Recognises what other commands wrote into RUN (and its immediate sub-folders): a training run (run.json,
metrics.jsonl, eval.json), features.db, attribution graphs (graph.json, graphs/*.json), ACDC edges.json,
heads.json, probe.json, and JSON results of other commands (results.json, lens.json, dla.json: any JSON with a
"command" field, shown with the figures next to it). One section per thing found; plots are embedded, so the page
can be mailed or archived on its own.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .options import add_dataclass_options, dataclass_from_args


@dataclass
class ReportConfig:
    """Where the report goes (the run folder is the positional argument)."""

    out: str | None = None
    """HTML file to write; default RUN/report.html (replacing a report.html a command wrote there)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render an HTML report of a run folder (RUN/report.html)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN", help="run folder written by other mechscope commands")
    add_dataclass_options(p, ReportConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.run_folder import build_run_report

    cfg = dataclass_from_args(ReportConfig, args)
    out = Path(cfg.out) if cfg.out else Path(args.run_dir) / "report.html"
    report = build_run_report(args.run_dir, out)
    path = report.write(out)
    print("sections: " + "; ".join(s.title for s in report.sections))
    print(path.resolve())
    return 0
