"""The ``mechscope`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Subcommand modules, each with add_parser(subparsers) that sets ``run`` as the default handler.
# In the order `mechscope --help` lists them: extract, intervene, decompose, interpret, trace, surfaces.
SUBCOMMANDS = ["models_cmd", "data_cmd", "cache", "patch", "lens", "dla", "probe", "heads", "train", "eval",
               "dictionaries_cmd", "features", "explain", "steer", "monitor", "attribute", "faithfulness", "acdc",
               "report", "serve", "tour"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mechscope", description="Mechanistic interpretability workbench.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"mechscope.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:  # user mistakes: one clear line
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"mechscope {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
