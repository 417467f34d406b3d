"""Shared small data for the training tests: hidden activations of a toy model of superposition."""

from __future__ import annotations

import functools

import torch

from mechscope.toy import ToyConfig, hidden_activations, train_toy_model


@functools.lru_cache(maxsize=2)
def toy_data(n_rows: int = 8192, steps: int = 300):
    """``(toy_model, hidden (n_rows, 16))`` for 64 features in 16 dims."""
    model = train_toy_model(ToyConfig(n_features=64, d_hidden=16, sparsity=0.97, steps=steps, batch_size=512))
    return model, hidden_activations(model, n_rows, seed=3)


def weights(d) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in d.state_dict().items() if v is not None}


@functools.lru_cache(maxsize=2)
def sparse_data(n_rows: int = 8192, n_features: int = 64, d: int = 16) -> torch.Tensor:
    """Sparse combinations of fixed random unit directions (no toy-model training: cheap)."""
    g = torch.Generator().manual_seed(7)
    dirs = torch.randn(n_features, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    f = torch.rand(n_rows, n_features, generator=g) * (torch.rand(n_rows, n_features, generator=g) > 0.95)
    return f @ dirs  # (N, d)


def ddp_specs():
    """Dictionaries trained by the torchrun test (shared by the test and ddp_worker.py)."""
    from mechscope.training import DictionarySpec

    return [DictionarySpec("topk", hook="toy", d_sae=64, k=4, name="topk"),
            DictionarySpec("relu", hook="toy", d_sae=64, name="relu")]


def ddp_config(steps: int):
    from mechscope.training import LoopConfig, OptimConfig, TrainConfig

    return TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=5), loop=LoopConfig(steps=steps, log_every=5))
