"""``mechscope models``: list the built-in offline models and fetch them."""

from __future__ import annotations

import argparse

from ..models import builtin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the built-in offline models, or fetch one",
                       description="List the built-in models (and whether each is cached), or fetch one into the "
                                   "cache ($MECHSCOPE_HOME, default ~/.cache/mechscope).")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list", help="what to do (default: list)")
    p.add_argument("names", nargs="*", help="built-in model names for 'fetch' (default: smollm2-135m)")
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        for name in args.names or ["smollm2-135m"]:
            builtin.get(name)  # unknown names fail before any download
        for name in args.names or ["smollm2-135m"]:
            print(f"{name}: {builtin.fetch(name, force=args.force)}")
        return 0
    width = max(len(n) for n in builtin.BUILTINS)
    for name, spec in builtin.BUILTINS.items():
        state = "cached" if builtin.is_cached(name) else "not fetched"
        print(f"{name:<{width}}  {state:<11}  {spec.description}")
    print(f"\ncache: {builtin.cache_root()}")
    return 0
