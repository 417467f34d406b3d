"""Training-step throughput (tokens/s) on CPU: mechscope vs SAELens, side by side in one run.

TopK SAE (d_in 576, 16x = 9216 latents, k 32) and ReLU-L1 SAE, batch 4096, float32, Adam, gradient clipping.
Both libraries train on the same synthetic activations (sparse combinations of random directions plus noise, norm
about sqrt(d_in)) for the same number of steps; the held-out FVU after training checks that the speed is not bought
with a worse loss. SAELens runs in its own virtualenv (``bash bench/peers/setup_saelens.sh``).

    python bench/bench_training.py --steps 20 --warmup 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).parent
SAELENS_PY = HERE / "peers" / ".venv-saelens" / "bin" / "python"


def make_data(path: Path, batch: int, steps: int, d_in: int = 576, n_features: int = 4096, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_features, d_in, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)

    def sample(n: int) -> torch.Tensor:
        idx = torch.randint(0, n_features, (n, 24), generator=g)
        vals = torch.rand(n, 24, generator=g) * 3
        x = torch.nn.functional.embedding_bag(idx, dirs, per_sample_weights=vals, mode="sum")
        return x + 0.05 * torch.randn(n, d_in, generator=g) + 0.3  # (N, D), offset so b_dec matters

    n_train = batch * min(steps, 16)
    save_file({"train": sample(n_train), "held_out": sample(batch), "batch": torch.tensor(batch),
               "d_sae": torch.tensor(16 * d_in), "k": torch.tensor(32), "lr": torch.tensor(4e-4),
               "l1": torch.tensor(5.0)}, str(path))


def mechscope_child(path: str, arch: str, steps: int, warmup: int, threads: int) -> dict:
    """The mechscope training step as the trainer runs it (DictionaryTrainer.step)."""
    from mechscope.training import DictionarySpec, DistInfo, LoopConfig, OptimConfig, TrainConfig
    from mechscope.training.trainer import DictionaryTrainer, build_dictionary

    torch.set_num_threads(threads)
    data = load_file(path)
    train, held, batch = data["train"], data["held_out"], int(data["batch"])
    options = {"l1_weighting": "decoder_norm"} if arch == "relu" else {}  # SAELens' standard SAE weights L1 so
    spec = DictionarySpec(arch, hook="x", d_sae=int(data["d_sae"]), k=int(data["k"]),
                          sparsity_coefficient=float(data["l1"]), options=options)
    cfg = TrainConfig(optim=OptimConfig(lr=float(data["lr"]), warmup_steps=0, decay_fraction=0.0),
                      loop=LoopConfig(steps=steps, normalize_activations=False, init_b_dec=False))
    torch.manual_seed(0)
    tr = DictionaryTrainer(spec, build_dictionary(spec, {"x": train.shape[1]}), cfg, DistInfo())
    tr.initialise({"x": train[:batch]})
    n_batches = train.shape[0] // batch
    t0 = 0.0
    for step in range(steps):
        if step == warmup:
            t0 = time.perf_counter()
        tr.step({"x": train[(step % n_batches) * batch:(step % n_batches + 1) * batch]}, step)
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        rec = tr.dictionary.eval()(held).reconstruction
        fvu = float((rec - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    return {"lib": "mechscope", "arch": arch, "tokens_per_s": (steps - warmup) * batch / elapsed,
            "step_s": elapsed / (steps - warmup), "fvu": fvu}


def run_child(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--archs", nargs="+", default=["topk", "relu"])
    p.add_argument("--child", nargs=2, metavar=("DATA", "ARCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(mechscope_child(args.child[0], args.child[1], args.steps, args.warmup, args.threads)))
        return
    if not SAELENS_PY.exists():
        sys.exit("SAELens virtualenv missing: run bash bench/peers/setup_saelens.sh")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    data = out / "bench_training_acts.safetensors"
    make_data(data, args.batch, args.steps)
    rows = []
    for arch in args.archs:
        common = [str(args.steps), str(args.warmup), str(args.threads)]
        ms = run_child([sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup),
                        "--threads", str(args.threads), "--child", str(data), arch])
        sl = run_child([str(SAELENS_PY), str(HERE / "peers" / "saelens_train_child.py"), str(data), arch, *common])
        rows += [ms, sl]
        print(f"{arch:5s} mechscope {ms['tokens_per_s']:9.0f} tok/s (fvu {ms['fvu']:.4f})   "
              f"sae_lens {sl['tokens_per_s']:9.0f} tok/s (fvu {sl['fvu']:.4f})   "
              f"ratio {ms['tokens_per_s'] / sl['tokens_per_s']:.2f}x", flush=True)
    (out / "bench_training.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
