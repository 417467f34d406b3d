"""Feature-statistics throughput (tokens/s) relative to harvesting alone, in one run.

Three passes over the same pre-tokenised corpus (Python stdlib source), interleaved and repeated so that load
from other processes hits all of them alike:

- ``harvest``: ``run_with_cache`` at the dictionary's hook point (the forward pass stops there);
- ``stats``: the full ``feature_stats`` loop: harvest + encode + every statistic (top-k, reservoir, histogram,
  co-occurrence of 256 features);
- ``update``: the statistics update alone on precomputed feature activations (its cost per token).

    .venv/bin/python bench/bench_features.py --tokens 4096 --d-sae 4096 --layer 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sysconfig
import time
from pathlib import Path

import torch

import mechscope as ms
from mechscope.features import StatsAccumulator, StatsConfig, token_batches


def stdlib_texts(n_chars: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for f in sorted(root.glob("*.py")):
        t = f.read_text(encoding="utf-8", errors="replace")
        out.append(t)
        total += len(t)
        if total > n_chars:
            break
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--layer", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ms.load_model("smollm2-135m")
    hook = f"blocks.{args.layer}.resid_post"
    sae = ms.dictionaries.create("topk", d_in=model.cfg.d_model, d_sae=args.d_sae, k=args.k, hook_name=hook).eval()
    batches = list(token_batches(model, stdlib_texts(args.tokens * 6), args.batch_size, args.max_length,
                                 max_tokens=args.tokens))
    n_tok = sum(int(b.attention_mask.sum()) for b in batches)
    cfg = StatsConfig(cooccurrence=list(range(256)))

    def harvest() -> None:
        with torch.no_grad():
            for b in batches:
                model.run_with_cache(b, names=[hook])

    def stats() -> None:
        acc = StatsAccumulator(sae.d_sae, cfg)
        with torch.no_grad():
            for b in batches:
                _, cache = model.run_with_cache(b, names=[hook])
                mask = b.attention_mask.bool()
                mask[:, 0] = False
                acc.update(b.input_ids, sae.encode(cache[hook]), mask)
        acc.finish()

    with torch.no_grad():
        feats = [sae.encode(model.run_with_cache(b, names=[hook])[1][hook]) for b in batches]

    def update() -> None:
        acc = StatsAccumulator(sae.d_sae, cfg)
        for b, f in zip(batches, feats):
            acc.update(b.input_ids, f, b.attention_mask.bool())
        acc.finish()

    times: dict[str, list[float]] = {"harvest": [], "stats": [], "update": []}
    harvest()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("harvest", harvest), ("stats", stats), ("update", update)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "tokens": n_tok, "d_sae": args.d_sae, "k": args.k, "hook": hook, "threads": args.threads,
        "harvest_tok_s": n_tok / best["harvest"], "stats_tok_s": n_tok / best["stats"],
        "update_only_tok_s": n_tok / best["update"], "stats_over_harvest": best["harvest"] / best["stats"],
        "cpu": platform.processor() or platform.machine(), "load_avg": os.getloadavg()[0], "times_s": times,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
