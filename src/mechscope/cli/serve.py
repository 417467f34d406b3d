"""``mechscope serve``: the local web UI and JSON API over run folders."""

from __future__ import annotations

import argparse

from ..server.config import ServeConfig
from .options import add_dataclass_options, dataclass_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the web UI over run folders (127.0.0.1 by default)",
                       description="A local web UI over the run folders in --runs: run browser, feature search and "
                                   "dashboards, attribution-graph viewer, steering, logit lens and patching. "
                                   "The JSON API is described at /openapi.json and /docs. With --allow-remote and "
                                   "a non-loopback --host every API call needs a token (--token, or a generated "
                                   "one printed with the address).")
    add_dataclass_options(p, ServeConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = dataclass_from_args(ServeConfig, args)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ValueError(f"the web UI needs the server extra: pip install 'mechscope[server]' ({e})") from None
    from ..server import serve
    from ..server.runs import RunRegistry

    names = RunRegistry(config.runs).names()
    print(f"serving {len(names)} run(s) from {config.runs} on {config.url()} (API: /docs, /openapi.json); "
          f"Ctrl-C stops", flush=True)
    if config.token:
        print("every /api request needs the token: open the address above (the page keeps it), or send "
              f"'Authorization: Bearer {config.token}'", flush=True)
    serve(config)
    return 0
