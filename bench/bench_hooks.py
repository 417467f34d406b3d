"""Hooked model vs plain HF forward on the built-in model: tokens/s and peak memory, as ratios in one run.

    .venv/bin/python bench/bench_hooks.py [--batch 8] [--seq 128] [--rounds 7] [--peer transformer_lens]

Timing: all configurations run in one process, interleaved round-robin over ``--rounds`` rounds, median per
configuration, so machine noise hits them alike. Peak memory: each configuration runs once more in its own
subprocess, which resets the kernel's peak-RSS counter after loading and reports the growth above that baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

MODEL = "smollm2-135m"


def configs(model, tokens):
    n = model.cfg.n_layers
    resid = [f"blocks.{l}.resid_post" for l in range(n)]
    ids = tokens.input_ids
    return {
        "plain HF forward": lambda: model.hf(input_ids=ids, use_cache=False),
        f"run_with_cache: all {n} resid_post": lambda: model.run_with_cache(tokens, names=resid + ["logits"]),
        "run_with_cache: every hook point": lambda: model.run_with_cache(tokens, stop_early=False),
        "run_with_cache: blocks.5.resid_post (early stop)": lambda: model.run_with_cache(
            tokens, names=["blocks.5.resid_post"]),
    }


def setup(batch: int, seq: int):
    import mechscope as ms

    torch.manual_seed(0)
    model = ms.load_model(MODEL)
    ids = torch.randint(100, model.cfg.d_vocab - 100, (batch, seq))
    return model, ms.Tokens(ids)


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(name: str, batch: int, seq: int) -> None:
    model, tokens = setup(batch, seq)
    fn = configs(model, tokens)[name]
    with torch.inference_mode():
        fn()  # allocator warm-up, then measure growth above the settled baseline
        base = rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        out = fn()
        del out
    print(json.dumps({"peak_mb": (rss_kb("VmHWM") - base) / 1024}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--peer", choices=["transformer_lens"], help="also measure a peer library in its own venv")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if args.child:
        return child(args.child, args.batch, args.seq)

    model, tokens = setup(args.batch, args.seq)
    fns = configs(model, tokens)
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn()
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    n_tokens = args.batch * args.seq
    rows = []
    peer_rows = []
    for name in fns:
        mem = subprocess.run([sys.executable, __file__, "--child", name, "--batch", str(args.batch), "--seq",
                              str(args.seq)], capture_output=True, text=True, check=True)
        rows.append((name, n_tokens / statistics.median(times[name]), json.loads(mem.stdout.splitlines()[-1])["peak_mb"]))
    if args.peer:
        peer_rows = run_peer(args)
    hf_tps, hf_mem = rows[0][1], rows[0][2]
    print(f"\nmodel {MODEL}, batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds\n")
    print("| configuration | tokens/s | speed vs HF forward | peak memory (MB) | memory vs HF forward |")
    print("|---|---|---|---|---|")
    for name, tps, mem in rows:
        print(f"| {name} | {tps:,.0f} | {tps / hf_tps:.2f}x | {mem:,.0f} | {mem / hf_mem:.2f}x |")
    if peer_rows:
        # The peer runs in its own process at another time: its rows are divided by the plain HF forward timed
        # interleaved with them in that process, and compared with ours through those ratios.
        (_, peer_hf_tps, peer_hf_mem), *peer = peer_rows
        print(f"\n{peer_rows[0][0]}: {peer_hf_tps:,.0f} tokens/s, {peer_hf_mem:,.0f} MB (the peer's baseline)\n")
        print("| configuration | peer tokens/s | peer speed vs its HF forward | mechscope speed vs HF forward "
              "| mechscope / peer | peer memory vs its HF forward |")
        print("|---|---|---|---|---|---|")
        ours = {name.split(" (")[0]: tps / hf_tps for name, tps, _ in rows}
        ours["forward"] = 1.0
        for name, tps, mem in peer:
            key = name.split(": ", 1)[1].split(" (")[0]
            r = tps / peer_hf_tps
            mine = ours.get(key)
            both = f"{mine:.2f}x | {mine / r:.2f}x" if mine is not None else "- | -"
            print(f"| {name} | {tps:,.0f} | {r:.2f}x | {both} | {mem / peer_hf_mem:.2f}x |")


def run_peer(args) -> list[tuple[str, float, float]]:
    venv = Path(__file__).resolve().parent.parent / ".venv-transformer_lens" / "bin" / "python"
    if not venv.exists():
        raise SystemExit(f"{venv} missing: run `bash bench/peers/transformer_lens.sh` first")
    from mechscope.models import builtin

    out = subprocess.run([str(venv), str(Path(__file__).parent / "peers" / "tl_child.py"), str(builtin.model_dir(MODEL)),
                          str(args.batch), str(args.seq), str(args.rounds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"TransformerLens run failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.splitlines()[-1])
    return [(f"TransformerLens {res['version']}: {k}", v["tokens_per_s"], v["peak_mb"]) for k, v in res["rows"].items()]


if __name__ == "__main__":
    main()
