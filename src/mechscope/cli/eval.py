"""``mechscope eval RUN``: recompute ``RUN/eval.json`` and ``RUN/eval.png`` for a training run."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate the dictionaries of a training run (writes eval.json)",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN", help="run folder written by 'mechscope train'")
    p.add_argument("--contexts", type=int, default=32, help="held-out token contexts to evaluate on (default: 32)")
    p.add_argument("--model-batch", type=int, default=8, help="contexts per forward pass (default: 8)")
    p.add_argument("--model", default=None, help="load this model instead of the one recorded in run.json")
    p.add_argument("--no-plot", action="store_true", help="skip eval.png")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import mechscope as ms
    from mechscope.evals import evaluate_run

    model = ms.load_model(args.model) if args.model else None
    report = evaluate_run(args.run_dir, model=model, n_contexts=args.contexts, model_batch=args.model_batch,
                          plot=not args.no_plot)
    data = report.to_json()
    for name, d in data["dictionaries"].items():
        down = d["downstream"] or {}
        print(json.dumps({"dictionary": name, "l0": round(d["l0"], 3), "fvu": round(d["fvu"], 5),
                          "ce_recovered": down.get("ce_recovered"), "kl": down.get("kl"),
                          "dead_fraction": d["dead_fraction"]}))
    return 0
