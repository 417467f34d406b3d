"""``mechscope train``: harvest activations and train sparse dictionaries into a run folder.

    mechscope train --model smollm2-135m --hook blocks.6.resid_post --arch topk --k 32 --steps 2000 --out runs/a

Options are generated from the config dataclasses (their field docstrings are the help text): DictionarySpec,
PackConfig, StoreConfig, OptimConfig, SparsityConfig (prefixed ``--sparsity-``), DeadLatentConfig, LoopConfig.
Several ``--hook`` values train one dictionary per hook point from the same harvest. ``--tensorboard`` and
``--wandb offline|online`` mirror the logged metrics to a dashboard (``metrics.jsonl`` stays the record). Under
``torchrun --nproc_per_node=N mechscope train ...`` every rank harvests its own slice and trains with DDP.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from pathlib import Path

from ..data.specs import SOURCE_HELP
from .options import arg_type, field_docs

if typing.TYPE_CHECKING:
    from mechscope.training.tracking import Tracker

log = logging.getLogger(__name__)

# (group, dataclass path, prefix, fields left out)
GROUPS = [
    ("spec", "mechscope.training.config:DictionarySpec", "", ("hook", "lr", "name", "options")),
    ("pack", "mechscope.data.packing:PackConfig", "", ()),
    ("store", "mechscope.activations.store:StoreConfig", "", ("seed",)),
    ("optim", "mechscope.training.config:OptimConfig", "", ()),
    ("sparsity", "mechscope.training.config:SparsityConfig", "sparsity_", ()),
    ("dead", "mechscope.training.config:DeadLatentConfig", "", ()),
    ("loop", "mechscope.training.config:LoopConfig", "", ()),
]


def _cls(path: str) -> type:
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _add_group(parser: argparse.ArgumentParser, cls: type, prefix: str, skip: tuple[str, ...]) -> None:
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        dest = prefix + f.name
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) else tp
        default = f.default if f.default is not dataclasses.MISSING else None
        text = f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%")  # argparse %-formats help
        flag = "--" + dest.replace("_", "-")
        if base is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif typing.get_origin(base) is typing.Literal:
            group.add_argument(flag, dest=dest, choices=typing.get_args(base), default=default, help=text)
        else:
            group.add_argument(flag, dest=dest, type=arg_type(base), default=default, help=text)


def _build(args: argparse.Namespace, group: str) -> typing.Any:
    _, path, prefix, skip = next(g for g in GROUPS if g[0] == group)
    cls = _cls(path)
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls) if f.name not in skip}
    return cls, values


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train sparse dictionaries on a model's activations",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="built-in name, hub id, local directory or .gguf file")
    p.add_argument("--hook", required=True, nargs="+",
                   help="hook point(s): one dictionary per value; comma-join points to stack them (crosscoders)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--source", default="stdlib", help=SOURCE_HELP + " (default: stdlib)")
    p.add_argument("--field", default="text", help="JSONL field / Parquet column / dataset field holding the text")
    p.add_argument("--cache", default=None, help="write activations to this folder first (resumable shards)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest valid checkpoint (the settings must match)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without --resume or --overwrite a non-empty --out is "
                        "refused)")
    p.add_argument("--eval-contexts", type=int, default=32, help="held-out contexts for eval.json (0: skip)")
    p.add_argument("--device", default=None, help="device of model and dictionaries (default: cpu / this rank's GPU)")
    t = p.add_argument_group("tracking", "mirror the logged metrics to a dashboard (metrics.jsonl in --out stays the "
                                         "record of the run; needs pip install 'mechscope[tracking]')")
    t.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                   help="write TensorBoard event files to DIR (default: <out>/tensorboard)")
    t.add_argument("--wandb", choices=("offline", "online"), default=None,
                   help="log to Weights & Biases; offline writes <out>/wandb/offline-run-* (upload: wandb sync)")
    t.add_argument("--wandb-project", default="mechscope", help="W&B project (default: mechscope)")
    t.add_argument("--wandb-name", default=None, help="W&B run name (default: the name of --out)")
    for _, path, prefix, skip in GROUPS:
        _add_group(p, _cls(path), prefix, skip)
    p.set_defaults(run=run)


def _trackers(args: argparse.Namespace) -> list[Tracker]:
    """The trackers asked for by --tensorboard / --wandb (their folders inside --out by default)."""
    import shutil

    from mechscope.training.loop import TRACKER_FOLDERS
    from mechscope.training.tracking import TensorBoardTracker, WandbTracker

    if args.overwrite:  # a replaced run's dashboards go with it
        for name in TRACKER_FOLDERS:
            shutil.rmtree(Path(args.out) / name, ignore_errors=True)
    out: list[Tracker] = []
    if args.tensorboard is not None:
        out.append(TensorBoardTracker(args.tensorboard or Path(args.out) / "tensorboard"))
    if args.wandb is not None:
        out.append(WandbTracker(project=args.wandb_project, name=args.wandb_name or Path(args.out).name,
                                mode=args.wandb, dir=args.out))  # wandb writes <out>/wandb
    return out


def run(args: argparse.Namespace) -> int:
    import mechscope as ms
    from mechscope.activations import ActivationStore, harvest_to_disk
    from mechscope.data import open_source, pack
    from mechscope.evals import evaluate_run
    from mechscope.training import TrainConfig, check_run_folder, init_distributed, shutdown, train

    check_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)  # before any expensive work
    info = init_distributed(args.device)
    model = ms.load_model(args.model)
    if info.device != "cpu":
        model.to(info.device)
    spec_cls, spec_values = _build(args, "spec")
    specs = [spec_cls(hook=h, **spec_values) for h in args.hook]
    pack_cls, pack_values = _build(args, "pack")
    pack_cfg = pack_cls(**pack_values)
    store_cls, store_values = _build(args, "store")
    store_cfg = store_cls(seed=args.seed, **store_values)
    cfg = TrainConfig(**{g: _build(args, g)[0](**_build(args, g)[1]) for g in ("optim", "sparsity", "dead", "loop")})
    hooks = sorted({h for s in specs for h in s.hooks_in + s.hooks_out})

    def contexts():
        return pack(open_source(args.source, field=args.field), model.tokenizer, pack_cfg)

    if args.cache:
        folder = Path(args.cache) / (f"rank{info.rank}" if info.enabled else "")
        from mechscope.data import rank_slice

        rows = cfg.loop.steps * store_cfg.batch_size + store_cfg.buffer_rows  # what this rank will consume
        per_context = pack_cfg.context_size - (1 if pack_cfg.prepend_bos else 0)
        harvest_to_disk(model, lambda: rank_slice(contexts(), info.rank, info.world_size), hooks, folder,
                        cfg=store_cfg, max_contexts=-(-rows // per_context) + 1)
        store = ActivationStore.from_shards(folder, store_cfg, rank=info.rank)
    else:
        store = ActivationStore.from_model(model, contexts, hooks, store_cfg, rank=info.rank,
                                           world_size=info.world_size)
    meta = {"data": {"source": args.source, "field": args.field, "pack": dataclasses.asdict(pack_cfg),
                     "buffer_rows": store_cfg.buffer_rows}}
    trackers = _trackers(args) if info.is_main else []  # only the main rank logs
    try:
        result = train(store, specs, cfg, out=args.out, model_name=args.model, resume=args.resume,
                       overwrite=args.overwrite, info=info, meta=meta, callbacks=trackers)
    finally:
        for tracker in trackers:  # each closes itself after the last step; this covers a failed run
            tracker.close()
    if info.is_main:
        for name, m in result.metrics.items():
            log.info("%s: loss %.4g, fvu %.4f, l0 %.1f", name, m.get("loss", float("nan")), m.get("fvu", float("nan")),
                     m.get("l0", float("nan")))
        if args.eval_contexts > 0:
            evaluable = [s.folder_name() for s in specs if s.arch not in ("crosscoder", "clt")]
            if evaluable:
                evaluate_run(args.out, model=model, n_contexts=args.eval_contexts, only=evaluable)
        print(f"trained {len(result.dictionaries)} dictionar{'y' if len(result.dictionaries) == 1 else 'ies'} "
              f"for {result.steps} steps ({result.tokens} tokens) into {args.out}")
    shutdown()
    return 0
