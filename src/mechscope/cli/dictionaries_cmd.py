"""``mechscope dictionaries``: public pretrained dictionaries by name (a subcommand group).

    mechscope dictionaries list [--model SUBSTR] [--release NAME] [--json FILE]   known releases: model, hook point, ids
    mechscope dictionaries fetch RELEASE ID --out DIR                              download, convert, save
                                                                                   (SAELens layout)
    mechscope dictionaries build [--model M]             train the model's full transcoder set into MECHSCOPE_HOME

Each action is a function ``add_<action>(actions)`` listed in :data:`ACTIONS`; a new action (``build``) adds one.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_list(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("list", help="known public releases with their model, hook point and ids")
    p.add_argument("--model", default=None, help="only releases whose model id contains this (e.g. gemma-2-2b)")
    p.add_argument("--release", default=None, help="one release: also list example ids")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    p.set_defaults(run=run_list)


def add_fetch(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("fetch", help="download a release's dictionary, convert it, save it as a folder")
    p.add_argument("release", help="release name (mechscope dictionaries list)")
    p.add_argument("id", help="dictionary id inside the release, e.g. layer_12/width_16k/canonical")
    p.add_argument("--out", required=True, help="folder to write (a set writes one subfolder per layer)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.set_defaults(run=run_fetch)


def add_build(actions: argparse._SubParsersAction) -> None:
    from .dictionaries_build import add_build as add

    add(actions)


ACTIONS: list[Callable[[argparse._SubParsersAction], None]] = [add_list, add_fetch, add_build]
"""Every ``mechscope dictionaries`` action, in ``--help`` order."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dictionaries",
                       help="dictionaries by name: list, fetch; build the built-in model's transcoder set",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for add in ACTIONS:
        add(actions)


def _row(r: Any) -> dict[str, Any]:
    return {"release": r.name, "model": r.model, "kind": r.kind, "hook": r.hook, "layers": r.n_layers,
            "ids": r.ids, "repo": r.repo_id, "widths": list(r.widths), "description": r.description}


def run_list(args: argparse.Namespace) -> int:
    from ..dictionaries import get_release, list_releases

    rows = [_row(get_release(args.release))] if args.release else [_row(r) for r in list_releases(args.model)]
    if not rows:
        print(f"no release for a model matching {args.model!r}")
        return 1
    w = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in ("release", "model", "kind", "hook")}
    print("  ".join(k.ljust(w[k]) for k in w) + "  ids")
    for r in rows:
        print("  ".join(str(r[k]).ljust(w[k]) for k in w) + f"  {r['ids']}")
    if args.release:
        rel = get_release(args.release)
        ex = rel.example_ids()
        print(f"\n{rel.description}\nrepository: {rel.repo_id}; {len(ex)} example ids, e.g. {', '.join(ex[:6])}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from ..dictionaries import load_pretrained

    got = load_pretrained(args.release, args.id, revision=args.revision)
    out = Path(args.out)
    items = got if isinstance(got, list) else [got]
    for i, d in enumerate(items):
        d.save(out / f"layer_{i}" if isinstance(got, list) else out)
    print(f"saved {len(items)} dictionar{'ies' if len(items) > 1 else 'y'} of {args.release} / {args.id} to {out}")
    return 0
