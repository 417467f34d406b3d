"""Graph scores and faithfulness of attribution graphs through the cached full transcoder set, over prompts of
different kinds (issue 12: mean r >= 0.6 and completeness >= 0.7 targeted).

    python bench/faithfulness_prompts.py --out bench/out/faithfulness.json

For each prompt the target is the model's own top prediction (so no answer is assumed); the graph keeps up to
``--max-feature-nodes`` features, and :func:`mechscope.circuits.faithfulness.faithfulness` ablates and steers the top
``--n-features`` of them one at a time in three settings (frozen graph, replacement model, real model) and ablates
them together against random features. Prints a Markdown table and writes every number to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import mechscope as ms
from mechscope.circuits import AttributionConfig, attribute
from mechscope.circuits.faithfulness import SETTINGS, FaithfulnessConfig, faithfulness
from mechscope.sets import find_transcoder_set

PROMPTS = [
    ("factual recall", "The capital of France is"),
    ("factual recall", "The Eiffel Tower is located in the city of"),
    ("two-hop recall", "The capital of the country where the Colosseum stands is"),
    ("IOI", "When Mary and John went to the store, John gave a drink to"),
    ("induction", "The quick brown fox jumps over the lazy dog. The quick brown"),
    ("arithmetic", "3 + 4 ="),
    ("greater-than", "The war lasted from the year 1732 to the year 17"),
    ("antonym", "The opposite of hot is"),
    ("agreement", "One cat, two"),
    ("code", "def add(a, b):\n    return a +"),
]


def read_prompts(path: str) -> list[tuple[str, str]]:
    """``kind<TAB>prompt`` or bare prompt lines (blank lines and lines starting with '#' skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, _, prompt = line.partition("\t") if "\t" in line else ("prompt", "", line)
        out.append((kind.strip(), prompt.replace("\\n", "\n")))
    if not out:
        raise SystemExit(f"{path}: no prompts")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-feature-nodes", type=int, default=1024)
    p.add_argument("--n-features", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rank-by", choices=("influence", "effect"), default="influence",
                   help="which features are checked: top by influence on the target (circuit-tracer's pruning "
                        "score) or by |predicted ablation change|")
    p.add_argument("--diagnostics", action="store_true",
                   help="also measure with only attention patterns / only norm scales frozen (frozen_attention, "
                        "frozen_norms): which of the two separates the graph from the replacement model")
    p.add_argument("--live", choices=("none", "norms", "attention", "both"), default="none",
                   help="build graphs that differentiate through the norm scales and/or attention patterns instead "
                        "of freezing them (AttributionConfig.live_norms / live_attention; default: circuit-tracer's "
                        "frozen graph)")
    p.add_argument("--prompts", default="",
                   help="a text file of prompts to use instead of the built-in ten: one per line, 'kind<TAB>prompt' "
                        "or just the prompt ('\\n' in a prompt stands for a newline)")
    p.add_argument("--out", default="bench/out/faithfulness.json")
    args = p.parse_args()
    prompts = read_prompts(args.prompts) if args.prompts else PROMPTS
    torch.set_num_threads(args.threads)
    model = ms.load_model("smollm2-135m")
    found = find_transcoder_set(model)
    if found is None:
        raise SystemExit("no cached transcoder set: run `mechscope dictionaries build` first")
    tcs = found.transcoders()
    rows = []
    live_norms, live_attention = args.live in ("norms", "both"), args.live in ("attention", "both")
    for kind, prompt in prompts:
        t0 = time.time()
        target = int(model(prompt)[0, -1].argmax())
        graph = attribute(model, tcs, prompt, target_tokens=[target],
                          cfg=AttributionConfig(max_feature_nodes=args.max_feature_nodes, live_norms=live_norms,
                                                live_attention=live_attention))
        settings = SETTINGS if args.diagnostics else ("graph", "replacement", "real")
        res = faithfulness(model, tcs, prompt, target, graph=graph,
                           cfg=FaithfulnessConfig(n_features=args.n_features, settings=settings,
                                                  rank_by=args.rank_by))
        row = {"kind": kind, "prompt": prompt, "target": model.to_string([target]),
               "p_target": float(graph.logit_probs[0]), "features": graph.n_features,
               "replacement_score": graph.replacement_score, "completeness_score": graph.completeness_score,
               "seconds": round(time.time() - t0, 1), "result": res.to_json()}
        for s in settings:
            row[f"r_{s}"] = res.ablation[s].pearson
            row[f"sign_{s}"] = res.ablation[s].sign_agreement
            row[f"steer_r_{s}"] = res.steering[s].pearson
        row["top_real"], row["top_pred"] = res.top_group.measured["real"], res.top_group.predicted
        row["random_real"] = res.random_group.measured["real"]
        rows.append(row)
        print(f"{kind}: {prompt!r} -> {row['target']!r}: replacement {row['replacement_score']:.2f}, completeness "
              f"{row['completeness_score']:.2f}, r graph/replacement/real {row['r_graph']:.2f}/"
              f"{row['r_replacement']:.2f}/{row['r_real']:.2f}", flush=True)
    mean = lambda k: sum(r[k] for r in rows if not math.isnan(r[k])) / max(1, sum(not math.isnan(r[k]) for r in rows))  # noqa: E731
    summary = {k: mean(k) for k in ("replacement_score", "completeness_score", "r_graph", "r_replacement", "r_real",
                                    "sign_real", "steer_r_real", "r_frozen_attention", "r_frozen_norms")
               if k in rows[0]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"set": str(found.folder), "live": args.live, "summary": summary,
                                          "prompts": rows}, indent=1))
    print("\n| kind | prompt | target (p) | replacement | completeness | ablation r graph / replacement / real | "
          "sign (real) | steering r (real) | top-10 together: real (pred) | random |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | `{r['prompt']!r}` | `{r['target']!r}` ({r['p_target']:.2f}) | "
              f"{r['replacement_score']:.2f} | {r['completeness_score']:.2f} | {r['r_graph']:.2f} / "
              f"{r['r_replacement']:.2f} / {r['r_real']:.2f} | {r['sign_real']:.0%} | {r['steer_r_real']:.2f} | "
              f"{r['top_real']:+.3f} ({r['top_pred']:+.3f}) | {r['random_real']:+.3f} |")
    print(f"| **mean** | | | {summary['replacement_score']:.2f} | {summary['completeness_score']:.2f} | "
          f"{summary['r_graph']:.2f} / {summary['r_replacement']:.2f} / {summary['r_real']:.2f} | "
          f"{summary['sign_real']:.0%} | {summary['steer_r_real']:.2f} | | |")
    if args.diagnostics:
        print("\n| kind | ablation r: graph / only attention frozen / only norms frozen / replacement |\n|---|---|")
        for r in rows:
            print(f"| {r['kind']} | {r['r_graph']:.2f} / {r['r_frozen_attention']:.2f} / {r['r_frozen_norms']:.2f} / "
                  f"{r['r_replacement']:.2f} |")
        print(f"| **mean** | {summary['r_graph']:.2f} / {summary['r_frozen_attention']:.2f} / "
              f"{summary['r_frozen_norms']:.2f} / {summary['r_replacement']:.2f} |")


if __name__ == "__main__":
    main()
