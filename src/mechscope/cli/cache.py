"""``mechscope cache``: run prompts through a model and save the activations at chosen hook points."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write
from .options import add_dataclass_options, dataclass_from_args


@dataclass
class CacheConfig:
    prompts: list[str] = field(default_factory=list)
    """Prompts to run (each one row of the batch; shorter rows are right-padded and masked)."""
    names: list[str] = field(default_factory=lambda: ["blocks.0.resid_post"])
    """Hook points to record, e.g. blocks.6.resid_post blocks.3.attn.pattern (see README, Hook points)."""
    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    out: str = "runs/cache"
    """Run folder: activations.safetensors and manifest.json are written here."""

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("give at least one prompt (--prompts 'text' ...)")
        if not self.names:
            raise ValueError("give at least one hook point (--names blocks.0.resid_post ...)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="save activations at hook points for some prompts",
                       description="Run prompts through the model and save the activations at the chosen hook "
                                   "points (safetensors, with a JSON manifest).")
    add_dataclass_options(p, CacheConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from .. import load_model

    config = dataclass_from_args(CacheConfig, args)
    model = load_model(config.model)
    for name in config.names:
        model.resolve(name)  # unknown names fail before the forward pass
    with torch.inference_mode():
        _, cache = model.run_with_cache(config.prompts, names=config.names)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous() for name, t in cache.items()}
    tensors["input_ids"] = cache.tokens.input_ids
    tensors["attention_mask"] = (cache.tokens.attention_mask if cache.tokens.attention_mask is not None
                                 else torch.ones_like(cache.tokens.input_ids))
    atomic_write(out / "activations.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    manifest = {"model": config.model, "prompts": config.prompts,
                "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for name, t in cache.items():
        print(f"{name}: {tuple(t.shape)}")
    print(f"saved: {(out / 'activations.safetensors').resolve()}")
    return 0
