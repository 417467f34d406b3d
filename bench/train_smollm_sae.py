"""Train a TopK SAE (16x, k=32) on smollm2-135m ``blocks.6.resid_post`` over the built-in stdlib corpus, then report
FVU and CE loss recovered on held-out contexts (targets: FVU <= 0.25, CE recovered >= 0.8).

    python bench/train_smollm_sae.py --tokens 2000000 --out bench/out/smollm_topk

Writes the run folder (dictionary, metrics.jsonl, checkpoints, eval.json, eval.png) and prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch

import mechscope as ms
from mechscope.activations import ActivationStore, StoreConfig
from mechscope.data import PackConfig, open_source, pack
from mechscope.evals import evaluate_run
from mechscope.training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, export_checkpoint, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=2_000_000, help="training activation rows")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--eval-contexts", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/out/smollm_topk")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="skip training: export the newest checkpoint of --out (a run stopped early) and evaluate it")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    hook = "blocks.6.resid_post"
    model = ms.load_model("smollm2-135m")
    pack_cfg = PackConfig(context_size=args.context)
    store_cfg = StoreConfig(batch_size=args.batch, buffer_rows=16 * args.batch, model_batch=16)
    store = ActivationStore.from_model(model, lambda: pack(open_source("stdlib"), model.tokenizer, pack_cfg), [hook],
                                       store_cfg)
    steps = math.ceil(args.tokens / args.batch)
    cfg = TrainConfig(optim=OptimConfig(lr=args.lr, warmup_steps=min(50, steps // 10)),
                      loop=LoopConfig(steps=steps, log_every=10, checkpoint_every=100))
    spec = DictionarySpec("topk", hook=hook, expansion=16, k=32, name="topk")
    meta = {"data": {"source": "stdlib", "pack": vars(pack_cfg), "buffer_rows": store_cfg.buffer_rows}}
    t0 = time.time()
    if args.from_checkpoint:
        export_checkpoint(args.out, model_name="smollm2-135m", meta=meta)
        run = json.loads((Path(args.out) / "run.json").read_text())
        tokens, steps = run["tokens"], run["steps"]
    else:
        result = train(store, spec, cfg, out=args.out, model_name="smollm2-135m", meta=meta)
        tokens, steps = result.tokens, result.steps
    train_min = (time.time() - t0) / 60
    t1 = time.time()
    report = evaluate_run(args.out, model=model, n_contexts=args.eval_contexts)
    ev = report.to_json()["dictionaries"]["topk"]
    print(json.dumps({"tokens": tokens, "steps": steps, "train_minutes": round(train_min, 2),
                      "eval_minutes": round((time.time() - t1) / 60, 2), "fvu": ev["fvu"], "l0": ev["l0"],
                      "dead_fraction": ev["dead_fraction"], "ce_recovered": ev["downstream"]["ce_recovered"],
                      "ce_clean": ev["downstream"]["ce_clean"], "ce_spliced": ev["downstream"]["ce_spliced"],
                      "ce_zero": ev["downstream"]["ce_zero"], "kl": ev["downstream"]["kl"],
                      "eval_tokens": ev["downstream"]["tokens"]}, indent=1))


if __name__ == "__main__":
    main()
