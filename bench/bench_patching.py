"""Benchmark: a full layers × positions residual patching sweep on the built-in model, batched vs one forward pass
per cell, in one run; and the cost of attribution patching relative to one forward pass.

    .venv/bin/python bench/bench_patching.py [--prompts 1] [--batch-size 64] [--threads 2]

Prints a markdown table and writes it (with the exact command) to bench/RESULTS.md under "## Patching (issue 3)",
replacing only that section.
"""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import torch

import mechscope as ms
from mechscope.data.prompts import ioi_prompts
from mechscope.interventions import attribution_patch, patch_resid

HEADING = "## Patching (issue 3)"


def naive_sweep(model, ioi, metric, sample: int | None = None) -> torch.Tensor:
    """One forward pass per (layer, position) cell: what a loop over run_with_hooks does.

    With ``sample`` only that many cells, spread evenly over the grid, are run (the others stay NaN).
    """
    clean_t, corr_t = model.as_tokens(ioi.clean), model.as_tokens(ioi.corrupted)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_t, names=lambda n: n.endswith("resid_pre"))
    n, t = model.cfg.n_layers, corr_t.input_ids.shape[1]
    out = torch.full((n, t), float("nan"))
    cells = [(layer, pos) for layer in range(n) for pos in range(t)]
    if sample is not None and sample < len(cells):
        cells = [cells[round(i * (len(cells) - 1) / max(1, sample - 1))] for i in range(sample)]
    for layer, pos in cells:
        name = f"blocks.{layer}.resid_pre"
        def patch(act, hook, pos=pos, name=name):
            act = act.clone()
            act[:, pos] = cache[name][:, pos]
            return act
        with torch.no_grad():
            out[layer, pos] = metric(model.run_with_hooks(corr_t, [(name, patch)])).mean()
    return out


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    elapsed = time.perf_counter() - t0
    print(f"# {getattr(fn, '__name__', 'step')}: {elapsed:.1f} s", file=sys.stderr, flush=True)
    return result, elapsed


def write_results(table: str, command: str) -> None:
    path = Path(__file__).parent / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{HEADING}\n\nCommand: `{command}`\n\n{table}\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=1, help="IOI prompt pairs in the sweep")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per batched forward pass")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--naive-sample", type=int, default=None,
                    help="time the one-pass-per-cell loop on this many cells spread over the grid and extrapolate "
                         "(default: run every cell)")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ms.load_model("smollm2-135m")
    ioi = ioi_prompts(model, n=args.prompts, corruption="abc")
    metric = ioi.metric()
    corr_t = model.as_tokens(ioi.corrupted)
    with torch.no_grad():  # warm up
        model(corr_t)
        model(corr_t.input_ids.repeat(args.batch_size // args.prompts or 1, 1))
    n, t = model.cfg.n_layers, corr_t.input_ids.shape[1]

    naive, t_naive = timed(naive_sweep, model, ioi, metric, args.naive_sample)
    done = int((~naive.isnan()).sum())
    naive_note = "" if done == n * t else f" (extrapolated from {done} timed cells)"
    t_naive = t_naive * (n * t) / done
    batched, t_batched = timed(patch_resid, model, ioi.clean, ioi.corrupted, metric, batch_size=args.batch_size)
    plain, t_plain = timed(patch_resid, model, ioi.clean, ioi.corrupted, metric, batch_size=args.batch_size,
                           share_prefix=False)
    ran = ~naive.isnan()
    diff = max(float((batched.values - naive)[ran].abs().max()), float((plain.values - naive)[ran].abs().max()))

    def forward():
        with torch.no_grad():
            model(corr_t)
    fwd_times = [timed(forward)[1] for _ in range(5)]
    t_fwd = sorted(fwd_times)[2]
    _, t_attr_resid = timed(attribution_patch, model, ioi.clean, ioi.corrupted, metric,
                            names=[f"blocks.{layer}.resid_pre" for layer in range(n)])
    _, t_attr_all = timed(attribution_patch, model, ioi.clean, ioi.corrupted, metric)

    cells = n * t
    rows = [
        ("one forward pass per cell", f"{t_naive:.1f} s{naive_note}", f"{cells} passes", "1.0×"),
        ("batched + shared prefix (default)", f"{t_batched:.1f} s",
         f"{-(-cells // max(1, args.batch_size // args.prompts))} passes", f"**{t_naive / t_batched:.1f}×**"),
        ("batched, no shared prefix", f"{t_plain:.1f} s", "", f"{t_naive / t_plain:.1f}×"),
    ]
    table = "\n".join([
        f"Sweep: `resid_pre`, {n} layers × {t} positions = {cells} cells, {args.prompts} IOI prompt pair(s), "
        f"smollm2-135m, float32, {args.threads} CPU threads, batch size {args.batch_size} rows "
        f"({platform.processor() or platform.machine()}). Max |batched − per-cell| = {diff:.2e}.",
        "",
        "| sweep | time | forward passes | speed-up |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "| attribution patching | time | × one forward pass |",
        "|---|---|---|",
        f"| one forward pass (median of 5) | {t_fwd * 1000:.0f} ms | 1.0× |",
        f"| resid_pre of every layer | {t_attr_resid * 1000:.0f} ms | {t_attr_resid / t_fwd:.1f}× |",
        f"| every block hook point (q, k, v, pattern, z, outputs, residuals, mlp.post) | {t_attr_all * 1000:.0f} ms "
        f"| {t_attr_all / t_fwd:.1f}× |",
        "",
        "Attribution patching = 1 forward pass caching the clean activations + 1 forward and 1 backward pass on the "
        "corrupted input (the machine is shared: timings are noisy, ratios within one run are the comparison).",
    ])
    print(table)
    if not args.no_write:
        write_results(table, " ".join([".venv/bin/python", *map(shlex.quote, sys.argv)]))


if __name__ == "__main__":
    main()
