"""Attribution speed and memory, mechscope vs circuit-tracer, through the full transcoder set (issue 12, item 5).

    bash bench/peers/setup_circuit_tracer.sh                     # circuit-tracer's own virtualenv, once
    mechscope dictionaries build                                 # the cached set (make dictionaries), once
    python bench/attribution_speed.py --lengths 16,64 --max-feature-nodes 1024 --rounds 2

Both libraries read the same files: the model folder of the built-in smollm2-135m and the set's circuit-tracer
folder (``config.yaml`` + ``layer_L.safetensors``). Each measurement is a fresh process per library (circuit-tracer
through ``bench/peers/circuit_tracer_child.py`` in its virtualenv, mechscope through this script's ``--child``
mode), alternating libraries round by round, at the same thread count, prompt, ``max_feature_nodes`` and
``batch_size``; each process does ``--warmup`` untimed attributions then one timed one. Memory is the process's
peak resident set during the timed attribution (Linux VmHWM, reset just before it) minus its resident set just before
it: the attribution's own working memory, whatever each library keeps loaded besides.

Prompts are the first N tokens (BOS included) of a fixed English passage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PEER_PY = ROOT / "peers" / ".venv-circuit-tracer" / "bin" / "python"
CT_CHILD = ROOT / "peers" / "circuit_tracer_child.py"
PASSAGE = ("The history of the city begins with a small fishing village on the northern bank of the river. Over "
           "the following centuries merchants from the south settled there, built warehouses along the water and "
           "traded wool, salt and timber with the towns upstream. When the first bridge was finished in 1320, the "
           "village had grown into a market town with its own council, a church of grey stone and a school for the "
           "sons of the merchants. The plague of 1348 killed nearly half of its people, and for a long time")


def _status(field: str) -> float | None:
    m = re.search(field + r":\s+(\d+) kB", Path("/proc/self/status").read_text()) if Path("/proc/self/status").exists() \
        else None
    return int(m.group(1)) / 1024 if m else None


def child(req_path: str) -> None:
    """mechscope's side: load, warm up, time one attribution, write meta.json (mirrors circuit_tracer_child)."""
    import torch

    req = json.loads(Path(req_path).read_text())
    torch.set_num_threads(req["threads"])
    import mechscope as ms
    from mechscope.circuits import AttributionConfig, attribute
    from mechscope.circuits.replacement import ReplacementModel
    from mechscope.circuits.transcoders import load_transcoders

    model = ms.load_model(req["model_dir"])
    transcoders = load_transcoders(req["transcoders"])
    tokens = torch.tensor([req["tokens"]])
    cfg = AttributionConfig(max_n_logits=req["max_n_logits"], desired_logit_prob=req["desired_logit_prob"],
                            max_feature_nodes=req["max_feature_nodes"], batch_size=req["batch_size"])
    times, peaks, before = [], [], []
    graph = None
    for _ in range(req["warmup"] + req["runs"]):
        graph = None
        Path("/proc/self/clear_refs").write_text("5")
        before.append(_status("VmRSS"))
        t = time.perf_counter()
        rm = ReplacementModel(model, transcoders)  # built per call, as attribute() does by default
        graph = attribute(model, transcoders, tokens, cfg=cfg, replacement=rm)
        times.append(time.perf_counter() - t)
        peaks.append(_status("VmHWM"))
    assert graph is not None
    w = req["warmup"]
    Path(req["out"]).mkdir(parents=True, exist_ok=True)
    (Path(req["out"]) / "meta.json").write_text(json.dumps({
        "attribute_s": times[w:], "peak_rss_mb": peaks[w:], "rss_before_mb": before[w:],
        "n_active": None, "n_selected": graph.n_features, "threads": torch.get_num_threads(),
        "graph_scores": [graph.replacement_score, graph.completeness_score]}, indent=1))


def run_child(lib: str, req: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    req = dict(req, out=str(out))
    (out / "request.json").write_text(json.dumps(req, indent=1))
    if lib == "circuit_tracer":
        cmd = [str(PEER_PY), str(CT_CHILD), str(out / "request.json")]
        env = dict(os.environ, PYTHONPATH="", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1")
    else:
        cmd = [sys.executable, __file__, "--child", str(out / "request.json")]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{lib} child failed ({p.returncode}):\n{p.stderr[-4000:]}")
    meta = json.loads((out / "meta.json").read_text())
    return {"s": meta["attribute_s"][-1], "mem_mb": meta["peak_rss_mb"][-1] - meta["rss_before_mb"][-1],
            "peak_rss_mb": meta["peak_rss_mb"][-1], "n_selected": meta["n_selected"],
            "scores": meta.get("graph_scores")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lengths", default="16,64", help="prompt lengths in tokens, BOS included")
    ap.add_argument("--max-feature-nodes", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-n-logits", type=int, default=10)
    ap.add_argument("--desired-logit-prob", type=float, default=0.95)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", default=None, help="transcoder-set folder (default: the cached set of smollm2-135m)")
    ap.add_argument("--out", default=str(ROOT / "out" / "attribution_speed"))
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if not PEER_PY.is_file():
        raise SystemExit(f"{PEER_PY} missing: run bash bench/peers/setup_circuit_tracer.sh")
    from mechscope.models import builtin
    from mechscope.sets import find_transcoder_set

    folder = builtin.fetch("smollm2-135m")
    found = find_transcoder_set("smollm2-135m", args.set)
    if found is None:
        raise SystemExit("no cached transcoder set for smollm2-135m: run `mechscope dictionaries build` first")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok(PASSAGE, add_special_tokens=False)["input_ids"]
    special = {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
               if getattr(tok, k, None) is not None}
    results: dict = {"settings": vars(args) | {"transcoders": str(found.circuit_tracer_dir)}, "lengths": {}}
    for n in [int(v) for v in args.lengths.split(",")]:
        tokens = [tok.bos_token_id] + ids[:n - 1]
        req = dict(model_dir=str(folder), transcoders=str(found.circuit_tracer_dir), tokens=tokens,
                   special_tokens=special, threads=args.threads, n_ctx=max(64, len(tokens)),
                   max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size,
                   max_n_logits=args.max_n_logits, desired_logit_prob=args.desired_logit_prob,
                   warmup=args.warmup, runs=1)
        rows: dict[str, list[dict]] = {"mechscope": [], "circuit_tracer": []}
        for r in range(args.rounds):
            order = ["circuit_tracer", "mechscope"] if r % 2 == 0 else ["mechscope", "circuit_tracer"]
            for lib in order:
                rows[lib].append(run_child(lib, req, Path(args.out) / f"len{n}" / lib))
                print(f"{n} tokens, round {r}, {lib}: {rows[lib][-1]['s']:.2f} s, "
                      f"{rows[lib][-1]['mem_mb']:.0f} MiB", flush=True)
        med = {lib: statistics.median(x["s"] for x in v) for lib, v in rows.items()}
        mem = {lib: max(x["mem_mb"] for x in v) for lib, v in rows.items()}
        results["lengths"][n] = {"runs": rows, "median_s": med, "max_attribution_mem_mb": mem,
                                 "speed_mechscope_over_circuit_tracer": med["circuit_tracer"] / med["mechscope"]}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| prompt tokens | mechscope s | circuit-tracer s | speed (ct time / ms time) | mechscope MiB | "
          "circuit-tracer MiB |\n|---|---|---|---|---|---|")
    for n, v in results["lengths"].items():
        print(f"| {n} | {v['median_s']['mechscope']:.1f} | {v['median_s']['circuit_tracer']:.1f} | "
              f"{v['speed_mechscope_over_circuit_tracer']:.2f}x | {v['max_attribution_mem_mb']['mechscope']:.0f} | "
              f"{v['max_attribution_mem_mb']['circuit_tracer']:.0f} |")


if __name__ == "__main__":
    main()
