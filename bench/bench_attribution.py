"""Circuits bench: attribution-graph cost on smollm2-135m, and the graph's predictions checked by ablation.

1. Cost: time and peak RSS to build a graph for a 16-token prompt (and 8 / 32 tokens for the growth), each in its
   own subprocess so peak memory is per configuration (``ru_maxrss`` after building minus after loading).
2. Faithfulness: for a short factual prompt, ablate each of the top features of the pruned graph in the *real*
   model (transcoders spliced with error terms) and correlate the target-logit change with the graph's prediction.

Transcoders: per-layer ReLU transcoders fitted by ``bench/fit_circuit_transcoders.py`` (run first if missing).

    python bench/bench_attribution.py [--features 256] [--batch 32] [--lengths 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
TC_DIR = Path.home() / ".cache" / "mechscope" / "bench" / "smollm2-tc"
OUT = HERE / "out" / "circuits"
TEXT = ("The quick brown fox jumps over the lazy dog while the old farmer watches from the porch of his house, "
        "drinking coffee and reading yesterday's newspaper about the weather in the valley.")
FACTUAL = "Fact: the capital of France is the city of"

log = logging.getLogger("bench_attribution")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(n_tokens: int, features: int, batch: int) -> dict:
    import mechscope as ms
    from mechscope.circuits import AttributionConfig, attribute
    from mechscope.circuits.transcoders import load_transcoders

    torch.set_num_threads(2)
    model = ms.load_model("smollm2-135m")
    tcs = load_transcoders(str(TC_DIR))
    tokens = model.to_tokens(TEXT)[:, :n_tokens]
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    g = attribute(model, tcs, tokens, cfg=AttributionConfig(max_feature_nodes=features, batch_size=batch))
    dt = time.perf_counter() - t0
    return {"n_tokens": int(tokens.shape[1]), "seconds": dt, "peak_rss_mb": _rss_mb(), "rss_growth_mb": _rss_mb() - rss0,
            "feature_nodes": g.n_features, "nodes": g.n_nodes, "features": features, "batch": batch}


def faithfulness(features: int, batch: int, k: int) -> dict:
    import mechscope as ms
    from mechscope.circuits import AttributionConfig, ablation_study, attribute
    from mechscope.circuits.transcoders import load_transcoders

    model = ms.load_model("smollm2-135m")
    tcs = load_transcoders(str(TC_DIR))
    t0 = time.perf_counter()
    g = attribute(model, tcs, FACTUAL, cfg=AttributionConfig(max_feature_nodes=features, batch_size=batch,
                                                             max_n_logits=5))
    build = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    g.write_json(OUT / "factual_graph.json", slug="factual", prompt=FACTUAL, scan="smollm2-135m")
    study = ablation_study(model, tcs, FACTUAL, g, k=k)
    pr = g.prune()
    res = {"prompt": FACTUAL, "target": g.logit_token_strs[0], "target_prob": float(g.logit_probs[0]),
           "build_seconds": build, "feature_nodes": g.n_features, "pruned_nodes": int(pr.node_mask.sum()),
           "pruned_edges": int(pr.edge_mask.sum()),
           "pruned_feature_nodes": int(pr.node_mask[: g.n_features].sum()), "ablated": study.node_ids,
           "predicted_direct": study.predicted_direct.tolist(), "predicted_total": study.predicted_total.tolist(),
           "actual_real": study.actual_real.tolist(), "actual_replacement": study.actual_replacement.tolist(),
           "correlations": study.correlations()}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", type=int, default=256, help="max_feature_nodes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--ablate", type=int, default=12, help="top features ablated one at a time")
    p.add_argument("--reuse-cost", action="store_true", help="keep the cost rows of the last results.json")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.features, a.batch)))
        return
    if not TC_DIR.is_dir():
        subprocess.run([sys.executable, str(HERE / "fit_circuit_transcoders.py"), "--out", str(TC_DIR), "--steps", "60",
                        "--seqs", "24", "--layers", *map(str, range(0, 30, 4))], check=True)
    rows = json.loads((OUT / "results.json").read_text())["cost"] if a.reuse_cost else []
    for n in [] if a.reuse_cost else a.lengths:
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--features", str(a.features),
                              "--batch", str(a.batch)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        log.info("%s", rows[-1])
    faith = faithfulness(a.features, a.batch, a.ablate)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"cost": rows, "faithfulness": faith, "command": " ".join(sys.argv)}
    (OUT / "results.json").write_text(json.dumps(result, indent=1))
    print("| prompt tokens | feature nodes | seconds | peak RSS MB | RSS growth MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n_tokens']} | {r['feature_nodes']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['rss_growth_mb']:.0f} |")
    print(json.dumps(faith["correlations"]), faith["target"], faith["target_prob"])


if __name__ == "__main__":
    main()
