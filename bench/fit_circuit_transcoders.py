"""Compact transcoder fitting for the circuits bench: one ReLU transcoder per MLP of smollm2-135m.

The library trainer (``mechscope.training``) was still being written when the circuits work landed, so this is a
small, self-contained routine: cache (mlp_in, mlp_out) pairs of every layer on a few thousand tokens of the Python
standard library's source, then fit each layer with Adam on ``FVU + l1 * sum(f * ||W_dec||) / E||y||``. The result
is saved as a circuit-tracer transcoder set (``layer_i.safetensors`` + ``config.yaml``), which
``mechscope attribute --transcoders DIR`` reads.

    python bench/fit_circuit_transcoders.py --out ~/.cache/mechscope/bench/smollm2-tc
"""

from __future__ import annotations

import argparse
import logging
import sysconfig
import time
from pathlib import Path

import torch

import mechscope as ms
from mechscope.dictionaries import create_mlp_transcoder, save_transcoder_set

log = logging.getLogger("fit_circuit_transcoders")


def stdlib_tokens(model: ms.HookedModel, n_seqs: int, seq_len: int) -> torch.Tensor:
    """``n_seqs`` windows of ``seq_len`` tokens from the standard library's own source files (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text, files = [], sorted(root.glob("*.py"))
    for f in files:
        text.append(f.read_text(errors="ignore"))
        if sum(map(len, text)) > n_seqs * seq_len * 5:
            break
    ids = model.tokenizer("\n".join(text), add_special_tokens=False)["input_ids"]
    ids = torch.tensor(ids[: n_seqs * seq_len]).reshape(n_seqs, seq_len)
    return ids


@torch.no_grad()
def collect(model: ms.HookedModel, tokens: torch.Tensor, layers: list[int],
            batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(len(layers), N, D) MLP inputs and outputs of the given layers."""
    names = [f"blocks.{l}.{k}" for l in layers for k in ("mlp_in", "mlp_out")]
    xs, ys = [], []
    for i in range(0, len(tokens), batch):
        _, cache = model.run_with_cache(tokens[i:i + batch], names=names)
        xs.append(torch.stack([cache[f"blocks.{l}.mlp_in"].flatten(0, 1) for l in layers]))
        ys.append(torch.stack([cache[f"blocks.{l}.mlp_out"].flatten(0, 1) for l in layers]))
    return torch.cat(xs, 1), torch.cat(ys, 1)


def fit_layer(layer: int, x: torch.Tensor, y: torch.Tensor, d_sae: int, steps: int, l1: float,
              batch: int = 256, seed: int = 0):
    torch.manual_seed(seed + layer)
    d = x.shape[-1]
    tc = create_mlp_transcoder(layer, d_model=d, d_sae=d_sae, model_name="smollm2-135m")
    with torch.no_grad():
        tc.W_enc.mul_(0.5)
        tc.b_dec.copy_(y.mean(0))
    opt = torch.optim.Adam(tc.parameters(), lr=2e-3)
    var = (y - y.mean(0)).pow(2).sum(-1).mean()
    ynorm = y.norm(dim=-1).mean()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,))
        out = tc(x[idx])
        fvu = (out.reconstruction - y[idx]).pow(2).sum(-1).mean() / var
        sparsity = (out.feature_acts * tc.decoder_norms()).sum(-1).mean() / ynorm
        loss = fvu + l1 * sparsity
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = tc(x[:2048])
        fvu = float((out.reconstruction - y[:2048]).pow(2).sum(-1).mean() / var)
        l0 = float((out.feature_acts > 0).sum(-1).float().mean())
    return tc.eval(), fvu, l0


def fit_all(model: ms.HookedModel, out: Path, *, n_seqs: int = 48, seq_len: int = 128, d_sae: int = 512,
            steps: int = 150, l1: float = 0.1, layers: list[int] | None = None) -> Path:
    t0 = time.time()
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    tokens = stdlib_tokens(model, n_seqs, seq_len)
    x, y = collect(model, tokens, layers)
    log.info("cached %d tokens x %d layers in %.0f s", x.shape[1], x.shape[0], time.time() - t0)
    tcs, stats = [], []
    for k, l in enumerate(layers):
        tc, fvu, l0 = fit_layer(l, x[k], y[k], d_sae, steps, l1)
        tcs.append(tc)
        stats.append((fvu, l0))
        log.info("layer %d: FVU %.3f, L0 %.1f", l, fvu, l0)
    out.mkdir(parents=True, exist_ok=True)
    if layers == list(range(model.cfg.n_layers)):
        save_transcoder_set(tcs, out, model_name="smollm2-135m")  # circuit-tracer transcoder set
    else:  # a subset: one dictionary folder per layer (the other MLPs are all error nodes)
        for l, tc in zip(layers, tcs):
            tc.save(out / f"layer_{l:02d}")
    (out / "fit_stats.txt").write_text("\n".join(f"{l} fvu={f:.4f} l0={z:.1f}" for l, (f, z) in zip(layers, stats)))
    log.info("fitted %d transcoders in %.0f s -> %s", len(tcs), time.time() - t0, out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path.home() / ".cache" / "mechscope" / "bench" / "smollm2-tc")
    p.add_argument("--d-sae", type=int, default=512)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--l1", type=float, default=0.1)
    p.add_argument("--seqs", type=int, default=48)
    p.add_argument("--layers", type=int, nargs="+", default=None, help="fit only these layers")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    fit_all(ms.load_model("smollm2-135m"), a.out, n_seqs=a.seqs, d_sae=a.d_sae, steps=a.steps, l1=a.l1,
            layers=a.layers)


if __name__ == "__main__":
    main()
