"""``mechscope data``: the built-in text sources: list them, fetch the prose corpus, report their sizes.

    mechscope data list                       named sources and mixtures, and whether prose is fetched
    mechscope data fetch prose [--force]      download + clean the prose corpus into $MECHSCOPE_HOME/corpora/prose
    mechscope data info [SPEC ...]            documents, characters and SmolLM2 tokens of each source
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_INFO = ["prose@train", "prose@heldout", "code@train", "code@heldout", "mixture"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="built-in text sources: list, fetch the prose corpus, sizes in tokens",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["list", "fetch", "info"], help="what to do")
    p.add_argument("names", nargs="*", help="fetch: corpora to fetch (only 'prose'); info: source specs "
                                            f"(default: {' '.join(DEFAULT_INFO)})")
    p.add_argument("--force", action="store_true", help="fetch: download and rebuild even if cached")
    p.add_argument("--tokenizer", default="smollm2-135m",
                   help="info: built-in model name, local folder or hub id whose tokenizer counts tokens")
    p.add_argument("--json", default=None, metavar="FILE", help="info: also write the sizes as JSON")
    p.set_defaults(run=run)


def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from ..models import builtin

    folder = builtin.fetch(name) if name in builtin.BUILTINS else name
    return AutoTokenizer.from_pretrained(str(folder))


def _list() -> int:
    from ..data import NAMED_MIXTURES, NAMED_SOURCES, DataSourceError, prose_dir, prose_manifest

    for name, named in NAMED_SOURCES.items():
        print(f"{name:<8} (default @{named.default_split})  {named.description}")
    for name, weights in NAMED_MIXTURES.items():
        print(f"{name:<8} (default @train)  mix:{','.join(f'{k}={v:g}' for k, v in weights.items())} "
              "(shares of characters; ends when a component runs out)")
    try:
        m = prose_manifest()
        packages = ", ".join(f"{p['name']} {p['version']}" for p in m["packages"])
        print(f"\nprose: {m['documents']['count']} documents, {m['documents']['chars']:,} chars "
              f"at {prose_dir()} ({packages})")
    except DataSourceError as e:
        print(f"\nprose: not available ({e})")
    return 0


def _info(specs: list[str], tokenizer_name: str, json_path: str | None) -> int:
    from ..data import prose_corpus
    from ..data.specs import is_mixture, resolve
    from ..data.stats import count_tokens, mixture_sizes, source_size

    for spec in specs:  # fail on a bad spec before loading anything
        resolve(spec)
    tok = _tokenizer(tokenizer_name)
    rows = []
    for spec in specs:
        if is_mixture(spec):
            rows += mixture_sizes(spec, tok)
            continue
        rows.append(source_size(spec, tok))
        name, _, split = spec.partition("@")
        if name == "prose":  # its two origins too
            rows += [count_tokens(prose_corpus(split or "train", source=s), tok, label=f"{spec} / {s}")
                     for s in ("python-doc", "fortunes")]
    width = max(len(r.spec) for r in rows)
    print(f"{'source':<{width}}  {'documents':>9}  {'characters':>11}  {'tokens':>10}  chars/token")
    for r in rows:
        print(f"{r.spec:<{width}}  {r.documents:>9,}  {r.chars:>11,}  {r.tokens:>10,}  "
              f"{r.chars / max(r.tokens, 1):.2f}")
    print(f"(tokens: {tokenizer_name} tokenizer, documents only; packing adds one separator per document)")
    if json_path:
        Path(json_path).write_text(json.dumps({"tokenizer": tokenizer_name, "sources": [r.as_dict() for r in rows]},
                                              indent=1) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    if args.action == "fetch":
        from ..data import fetch_prose, prose_manifest

        unknown = [n for n in args.names if n != "prose"]
        if unknown:
            raise ValueError(f"cannot fetch {', '.join(unknown)}: only 'prose' is fetched ('code' is always present)")
        folder = fetch_prose(force=args.force)
        docs = prose_manifest(folder)["documents"]
        print(f"prose: {docs['count']} documents, {docs['chars']:,} characters at {folder}")
        return 0
    return _info(args.names or DEFAULT_INFO, args.tokenizer, args.json)
