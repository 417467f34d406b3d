"""Sparsity-fidelity frontier at one MLP: TopK SAE on mlp_out vs TopK transcoder vs skip transcoder, matched L0
and matched tokens (issue 12; the transcoders paper, Dunefsky et al. 2024, finds transcoders on a par with SAEs).

    python bench/frontier.py --layer 6 --tokens 300000 --ks 8,16,32,64 --source prose+code

One harvest of ``blocks.L.mlp_in`` and ``blocks.L.mlp_out`` feeds every dictionary through the multi-dictionary
trainer (each sees the same batches in the same order); each is then evaluated on the same held-out contexts (the
ones after the training tokens): FVU of mlp_out, CE loss recovered with mlp_out spliced, L0 and the fraction of
latents that never fire on the eval tokens. Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time

import torch

import mechscope as ms
from mechscope.activations import ActivationStore, StoreConfig
from mechscope.activations.store import harvest
from mechscope.data import PackConfig, open_source, pack, special_ids
from mechscope.evals import evaluate
from mechscope.training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train

KINDS = {"sae": "SAE on mlp_out", "tc": "transcoder", "skip": "skip transcoder"}


def specs_for(layer: int, kinds: list[str], ks: list[int], expansion: int, tc_lrs: list[float] | None = None,
              sae_lrs: list[float] | None = None) -> list[DictionarySpec]:
    """One spec per (kind, k); with ``tc_lrs`` / ``sae_lrs``, one transcoder / SAE per learning rate (named
    ``..._lr<lr>``)."""
    mlp_in, mlp_out = f"blocks.{layer}.mlp_in", f"blocks.{layer}.mlp_out"
    out = []
    for kind, k in itertools.product(kinds, ks):
        if kind == "sae":
            for lr in sae_lrs or [None]:
                out.append(DictionarySpec("topk", hook=mlp_out, k=k, expansion=expansion, lr=lr,
                                          name=f"sae_k{k}" + (f"_lr{lr:g}" if lr else "")))
            continue
        arch = "skip_transcoder" if kind == "skip" else "transcoder"
        for lr in tc_lrs or [None]:
            out.append(DictionarySpec(arch, hook=mlp_in, hook_out=mlp_out, activation="topk", k=k, lr=lr,
                                      expansion=expansion, name=f"{kind}_k{k}" + (f"_lr{lr:g}" if lr else "")))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", type=int, default=6)
    p.add_argument("--tokens", type=int, default=300_000, help="training rows (one pass, no repeats)")
    p.add_argument("--ks", default="8,16,32,64")
    p.add_argument("--kinds", default="sae,tc,skip")
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--source", default="mixture", help="training text; evaluation reads SOURCE@heldout")
    p.add_argument("--tc-lrs", default="", help="comma-separated transcoder learning rates to compare (default: --lr)")
    p.add_argument("--sae-lrs", default="", help="comma-separated SAE learning rates to compare (default: --lr)")
    p.add_argument("--row-norm-cap", type=float, default=8.0, help="LoopConfig.row_norm_cap (0: none)")
    p.add_argument("--eval-contexts", type=int, default=48)
    p.add_argument("--no-center", action="store_true", help="train transcoders without input centring (ablation)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/out/frontier")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    ks, kinds = [int(k) for k in args.ks.split(",")], args.kinds.split(",")
    model = ms.load_model("smollm2-135m")
    hooks = [f"blocks.{args.layer}.mlp_in", f"blocks.{args.layer}.mlp_out"]
    contexts = pack(open_source(args.source), model.tokenizer, PackConfig(context_size=128))

    t0 = time.time()
    rows: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    n = 0
    exclude = special_ids(model.tokenizer)
    for _, chunk in harvest(model, contexts, hooks, model_batch=16, exclude=exclude):
        for h in hooks:
            rows[h].append(chunk[h])
        n += chunk[hooks[0]].shape[0]
        if n >= args.tokens:
            break
    tensors = {h: torch.cat(v)[:args.tokens] for h, v in rows.items()}
    heldout = args.source if "@" in args.source else f"{args.source}@heldout"
    eval_ctx = list(itertools.islice(pack(open_source(heldout), model.tokenizer, PackConfig(context_size=128)),
                                     args.eval_contexts))
    harvest_s = time.time() - t0

    store = ActivationStore.from_tensors(tensors, StoreConfig(batch_size=args.batch, buffer_rows=16 * args.batch))
    steps = args.tokens // args.batch
    cfg = TrainConfig(optim=OptimConfig(lr=args.lr, warmup_steps=min(50, steps // 10)),
                      loop=LoopConfig(steps=steps, log_every=max(1, steps // 10),
                                      center_transcoder_input=not args.no_center,
                                      row_norm_cap=args.row_norm_cap or None))
    t1 = time.time()
    tc_lrs = [float(v) for v in args.tc_lrs.split(",") if v]
    sae_lrs = [float(v) for v in args.sae_lrs.split(",") if v]
    result = train(store, specs_for(args.layer, kinds, ks, args.expansion, tc_lrs, sae_lrs), cfg, out=args.out,
                   overwrite=True,
                   model_name="smollm2-135m")
    train_s = time.time() - t1
    report = evaluate(model, result.dictionaries, eval_ctx, model_batch=16).to_json()["dictionaries"]
    table = {}
    for name, ev in report.items():
        table[name] = {"fvu": ev["fvu"], "ce_recovered": ev["downstream"]["ce_recovered"], "l0": ev["l0"],
                       "dead_fraction": ev["dead_fraction"]}
    print(json.dumps({"layer": args.layer, "tokens": steps * args.batch, "source": args.source, "batch": args.batch,
                      "lr": args.lr, "row_norm_cap": args.row_norm_cap,
                      "expansion": args.expansion, "center": not args.no_center, "harvest_s": round(harvest_s),
                      "train_s": round(train_s), "results": table}, indent=1))
    print(f"\n| k | {' | '.join(KINDS[k] + ' CE rec. / FVU / dead' for k in kinds)} |")
    print("|---|" + "---|" * len(kinds))
    for k in ks:
        cells = [" ; ".join(f"{v['ce_recovered']:.3f} / {v['fvu']:.3f} / {v['dead_fraction']:.3f}"
                            for name, v in table.items() if name.split("_")[:2] == [kind, f"k{k}"]) for kind in kinds]
        print(f"| {k} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
