"""SAELens side of bench/bench_training.py; runs inside bench/peers/.venv-saelens.

Usage: saelens_train_child.py ACTS.safetensors ARCH STEPS WARMUP THREADS
Prints one JSON line: tokens/s over the timed steps and the held-out FVU after training.
"""

import json
import sys
import time

import torch
from safetensors.torch import load_file

from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput


def main() -> None:
    path, arch, steps, warmup, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = load_file(path)
    train, held, batch = data["train"], data["held_out"], int(data["batch"])
    d_in, d_sae, k, lr, l1 = train.shape[1], int(data["d_sae"]), int(data["k"]), float(data["lr"]), float(data["l1"])
    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device="cpu", dtype="float32"))
        coefficients = {}
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=l1, device="cpu",
                                                            dtype="float32"))
        coefficients = {"l1": l1}
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
    dead = torch.zeros(d_sae, dtype=torch.bool)
    n_batches = train.shape[0] // batch
    t0 = None
    for step in range(steps):
        if step == warmup:
            t0 = time.perf_counter()
        x = train[(step % n_batches) * batch:(step % n_batches + 1) * batch]
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients=coefficients, dead_neuron_mask=dead,
                                                       n_training_steps=step, is_logging_step=False))
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        rec = sae.decode(sae.encode(held))
        fvu = float((rec - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    print(json.dumps({"lib": "sae_lens", "arch": arch, "tokens_per_s": (steps - warmup) * batch / elapsed,
                      "step_s": elapsed / (steps - warmup), "fvu": fvu}))


if __name__ == "__main__":
    main()
