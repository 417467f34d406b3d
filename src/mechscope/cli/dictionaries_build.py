"""``mechscope dictionaries build``: the model's full transcoder set (a transcoder at every MLP), cached.

    mechscope dictionaries build                       # smollm2-135m, the documented preset (make dictionaries)
    mechscope dictionaries build --tokens 200000 --out DIR

Trains every layer's TopK skip transcoder from one live harvest, checkpointing as it goes: run the same command
again to resume an interrupted build. The set lands in ``$MECHSCOPE_HOME/dictionaries/<model>/transcoders`` (SAELens
folders, a circuit-tracer set, eval.json, manifest.json), where the tour, ``attribute`` and ``serve`` find it.
"""

from __future__ import annotations

import argparse
import json

from .options import add_dataclass_options, dataclass_from_args


def add_build(actions: argparse._SubParsersAction) -> None:
    from ..sets.build import SetConfig

    p = actions.add_parser("build", help="train the model's full transcoder set (resumable) into MECHSCOPE_HOME",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, SetConfig)
    p.add_argument("--out", default=None, help="set folder (default: $MECHSCOPE_HOME/dictionaries/MODEL/transcoders)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing or unfinished set and start again")
    p.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    from ..sets import build_transcoder_set, find_transcoder_set
    from ..sets.build import SetConfig

    cfg = dataclass_from_args(SetConfig, args)
    folder = build_transcoder_set(cfg, folder=args.out, overwrite=args.overwrite)
    found = find_transcoder_set(cfg.model, folder)
    rep = found.manifest["replacement"] if found else {}
    print(f"transcoder set: {folder}")
    print(json.dumps({"layers": found.n_layers if found else None, "replacement": rep}, indent=1))
    return 0
