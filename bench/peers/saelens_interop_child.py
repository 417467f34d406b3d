"""SAELens side of bench/interop_saelens.py; runs inside bench/peers/.venv-saelens (never mechscope's venv).

Usage: saelens_interop_child.py JOBS.json

JOBS.json (written by the driver) holds ``inputs`` (a safetensors file with inputs ``x{d_in}`` [N, d_in] and
latents ``f{d_sae}`` [N, d_sae]), ``out`` (a folder for this script's outputs) and two job lists:

- ``load``: ``{"name", "folder"}``: load the folder with ``SAE.load_from_disk`` and write ``OUT/NAME.safetensors``
  with ``acts = encode(x)``, ``forward = sae(x)`` and ``decode = decode(f)``; or record why SAELens refused it.
- ``create``: ``{"name", "kind", "save", "folder", "d_in", "d_sae", "d_out", "k", "seed", ...}``: build a SAELens
  SAE of that kind with random weights, save it with SAELens' own method (``save_model`` for inference classes,
  ``save_inference_model`` for training classes: how SAELens' training runner writes its final SAE), load that
  folder back with ``SAE.load_from_disk`` and write the same three outputs from the loaded SAE.

Writes ``OUT/results.json``: name -> {"ok", "error", "class", "architecture", ...}. Only safetensors and JSON cross
the process boundary; nothing is pickled.
"""

import json
import math
import sys
import traceback
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import sae_lens
from sae_lens import (SAE, BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, GatedSAE, GatedSAEConfig, JumpReLUSAE,
                      JumpReLUSAEConfig, JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig, JumpReLUTrainingSAE,
                      JumpReLUTrainingSAEConfig, JumpReLUTranscoder, JumpReLUTranscoderConfig, SkipTranscoder,
                      SkipTranscoderConfig, StandardSAE, StandardSAEConfig, StandardTrainingSAE,
                      StandardTrainingSAEConfig, TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig,
                      Transcoder, TranscoderConfig)
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.sae import SAEMetadata

# kind -> (class, config class)
KINDS = {
    "standard": (StandardSAE, StandardSAEConfig),
    "topk": (TopKSAE, TopKSAEConfig),
    "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
    "gated": (GatedSAE, GatedSAEConfig),
    "transcoder": (Transcoder, TranscoderConfig),
    "skip_transcoder": (SkipTranscoder, SkipTranscoderConfig),
    "jumprelu_transcoder": (JumpReLUTranscoder, JumpReLUTranscoderConfig),
    "jumprelu_skip_transcoder": (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig),
    "standard_training": (StandardTrainingSAE, StandardTrainingSAEConfig),
    "topk_training": (TopKTrainingSAE, TopKTrainingSAEConfig),
    "batchtopk_training": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig),
    "jumprelu_training": (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig),
}


@torch.no_grad()
def outputs(sae, x: torch.Tensor, f: torch.Tensor) -> dict[str, torch.Tensor]:
    """encode(x), forward(x) (skip transcoders add their skip path here only) and decode(f)."""
    sae.eval()
    return {"acts": sae.encode(x).contiguous(), "forward": sae(x).contiguous(), "decode": sae.decode(f).contiguous()}


@torch.no_grad()
def randomise(sae, gen: torch.Generator) -> None:
    """Non-trivial random weights: decoder rows of varied norms, biases, positive thresholds, r_mag, W_skip."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    d_in = sae.W_enc.shape[0]
    for name, p in sae.named_parameters():
        if name == "W_enc":
            p.copy_(randn(*p.shape) / math.sqrt(d_in))
        elif name == "W_dec":
            rows = randn(*p.shape)
            rows /= rows.norm(dim=-1, keepdim=True)
            p.copy_(rows * (0.5 + torch.rand(p.shape[0], 1, generator=gen)))  # norms in [0.5, 1.5)
        elif name == "threshold":
            p.copy_(0.05 + 0.4 * torch.rand(*p.shape, generator=gen))
        elif name == "r_mag":
            p.copy_(0.2 * randn(*p.shape))
        elif name == "W_skip":
            p.copy_(0.5 * randn(*p.shape) / math.sqrt(d_in))
        else:  # b_enc, b_dec, b_gate, b_mag
            p.copy_(0.2 * randn(*p.shape))


def create(job: dict) -> Path:
    cls, cfg_cls = KINDS[job["kind"]]
    transcoder = "transcoder" in job["kind"]
    meta = SAEMetadata(model_name="gpt2", hook_name=job["hook_name"], hook_head_index=None)
    if transcoder:
        meta.hook_name_out = job["hook_name_out"]
    kwargs = dict(d_in=job["d_in"], d_sae=job["d_sae"], dtype="float32", device="cpu", metadata=meta)
    if transcoder:
        kwargs.update(d_out=job["d_out"], apply_b_dec_to_input=False)
    if "k" in job:
        kwargs["k"] = job["k"]
    kwargs.update(job.get("cfg", {}))
    sae = cls(cfg_cls(**kwargs))
    gen = torch.Generator().manual_seed(job["seed"])
    randomise(sae, gen)
    if job["kind"] == "batchtopk_training":  # the running threshold BatchTopK turns into a JumpReLU threshold
        sae.topk_threshold = torch.tensor(job["topk_threshold"], dtype=torch.double)
    folder = Path(job["folder"])
    getattr(sae, job["save"])(folder)
    return folder


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    torch.manual_seed(0)
    torch.set_num_threads(1)
    inputs = load_file(jobs["inputs"])
    out = Path(jobs["out"])
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {"_env": {
        "sae_lens_version": sae_lens.__version__, "torch_version": torch.__version__,
        "inference_architectures": sorted(SAE_CLASS_REGISTRY),
        "training_architectures": sorted(SAE_TRAINING_CLASS_REGISTRY),
    }}
    for job in jobs["load"] + jobs["create"]:
        name = job["name"]
        try:
            folder = create(job) if "kind" in job else Path(job["folder"])
            sae = SAE.load_from_disk(folder, device="cpu")
            x, f = inputs[f"x{sae.cfg.d_in}"], inputs[f"f{sae.cfg.d_sae}"]
            save_file(outputs(sae, x, f), str(out / f"{name}.safetensors"))
            cfg = json.loads((folder / "cfg.json").read_text())
            weights = load_file(str(folder / "sae_weights.safetensors"))
            results[name] = {"ok": True, "class": type(sae).__name__, "architecture": sae.cfg.architecture(),
                             "cfg_keys": sorted(cfg), "weight_keys": sorted(weights), "folder": str(folder)}
        except Exception as e:  # a refusal is a result too: the driver decides whether it was expected
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:400],
                             "traceback": traceback.format_exc()[-1500:]}
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
