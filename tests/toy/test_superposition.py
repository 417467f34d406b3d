"""Ground truth: a dictionary trained on a toy model's hidden layer recovers the true feature directions."""

import sys
from pathlib import Path

import pytest
import torch

from training.helpers import toy_data  # noqa: E402

from mechscope.activations import ActivationStore, StoreConfig  # noqa: E402
from mechscope.toy import ToyConfig, plot_geometry, recovery  # noqa: E402
from mechscope.training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train  # noqa: E402


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_sae_recovers_true_directions(arch: str) -> None:
    toy, hidden = toy_data(n_rows=32768)
    assert toy.cfg.n_features == 64 and toy.cfg.d_hidden == 16
    assert int(toy.represented().sum()) >= 60  # the toy model keeps (almost) every feature in superposition
    store = ActivationStore.from_tensors({"h": hidden}, StoreConfig(batch_size=512, buffer_rows=4096))
    spec = DictionarySpec(arch, hook="h", d_sae=128, k=4)
    cfg = TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=20), loop=LoopConfig(steps=500, log_every=50))
    d = train(store, spec, cfg).dictionaries[spec.folder_name()]
    scores = recovery(d.W_dec.detach(), toy.directions()[toy.represented()])
    assert scores.mean() >= 0.95, scores.mean()
    # a random decoder of the same size does much worse: the check can fail
    assert recovery(torch.randn(128, 16), toy.directions()).mean() < 0.9


def test_untrained_directions_and_plot(tmp_path: Path) -> None:
    toy, _ = toy_data(n_rows=32768)
    dirs = toy.directions()
    assert torch.allclose(dirs.norm(dim=1), torch.ones(64), atol=1e-5)
    assert recovery(dirs * 3.0, dirs).min() > 0.9999
    path = plot_geometry(toy, tmp_path / "geometry.png")
    assert path.stat().st_size > 1000


def test_toy_config_validation() -> None:
    with pytest.raises(ValueError, match="d_hidden"):
        ToyConfig(n_features=8, d_hidden=8)
    with pytest.raises(ValueError, match="sparsity"):
        ToyConfig(sparsity=1.0)
