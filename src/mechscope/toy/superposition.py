"""Toy models of superposition (Elhage et al. 2022): ground truth for dictionary learning.

``n_features`` sparse features (each active with probability ``1 - sparsity``, value uniform in [0, 1], weighted by
an importance ``decay ** i``) are compressed into ``d_hidden < n_features`` dimensions and read back:

    h     = x @ W.T                 W [d_hidden, n_features]
    x_hat = relu(h @ W + b)

Trained with importance-weighted MSE, the columns of ``W`` become the true feature directions in the hidden space,
packed in superposition (antipodal pairs, pentagons ...). :func:`hidden_activations` gives ``h`` for training a
dictionary, :func:`recovery` scores how well a dictionary's decoder recovers the true directions, and
:func:`plot_geometry` draws ``W.T @ W`` and the feature norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..validation import check_finite_fields


@dataclass
class ToyConfig:
    """A toy model of superposition and how it is trained."""

    n_features: int = 64
    """Number of ground-truth features."""
    d_hidden: int = 16
    """Hidden dimensions (fewer than features: superposition)."""
    sparsity: float = 0.95
    """Probability that a feature is zero in a sample."""
    importance_decay: float = 1.0
    """Importance of feature i is decay**i (1.0: all equally important)."""
    steps: int = 2000
    """Training steps."""
    batch_size: int = 1024
    """Samples per step."""
    lr: float = 3e-3
    """Adam learning rate."""
    seed: int = 0
    """Seed of initialisation and sampling."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        if not 0 < self.d_hidden < self.n_features:
            raise ValueError(f"need 0 < d_hidden < n_features, got {self.d_hidden} and {self.n_features}")
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if not 0 < self.importance_decay <= 1:
            raise ValueError(f"importance_decay must be in (0, 1], got {self.importance_decay}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class ToyModel(nn.Module):
    """``x -> relu((x @ W.T) @ W + b)`` (see module docstring)."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(cfg.d_hidden, cfg.n_features)))
        self.b = nn.Parameter(torch.zeros(cfg.n_features))
        self.register_buffer("importance", cfg.importance_decay ** torch.arange(cfg.n_features, dtype=torch.float32))

    def hidden(self, x: Float[Tensor, "batch n_features"]) -> Float[Tensor, "batch d_hidden"]:
        return x @ self.W.T  # (B, m)

    def forward(self, x: Float[Tensor, "batch n_features"]) -> Float[Tensor, "batch n_features"]:
        return torch.relu(self.hidden(x) @ self.W + self.b)  # (B, n)

    def directions(self) -> Float[Tensor, "n_features d_hidden"]:
        """Unit true feature directions in the hidden space (rows)."""
        w = self.W.detach().T  # (n, m)
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def represented(self, threshold: float = 0.5) -> Tensor:
        """Features whose embedding norm exceeds ``threshold`` (the model chose to represent them)."""
        return self.W.detach().norm(dim=0) > threshold


def sample_features(cfg: ToyConfig, n: int, generator: torch.Generator | None = None
                    ) -> Float[Tensor, "n n_features"]:
    """Sparse feature vectors: each entry active with probability 1 - sparsity, value uniform in [0, 1]."""
    values = torch.rand(n, cfg.n_features, generator=generator)
    active = torch.rand(n, cfg.n_features, generator=generator) >= cfg.sparsity
    return values * active  # (N, n)


def train_toy_model(cfg: ToyConfig | None = None) -> ToyModel:
    """Train a toy model with importance-weighted MSE (seconds on CPU)."""
    cfg = cfg or ToyConfig()
    torch.manual_seed(cfg.seed)
    model = ToyModel(cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in range(cfg.steps):
        x = sample_features(cfg, cfg.batch_size, gen)
        loss = (model.importance * (model(x) - x).pow(2)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def hidden_activations(model: ToyModel, n: int, seed: int = 0) -> Float[Tensor, "n d_hidden"]:
    """Hidden activations of ``n`` fresh samples (the data a dictionary is trained on)."""
    x = sample_features(model.cfg, n, torch.Generator().manual_seed(seed))
    return model.hidden(x)


@torch.no_grad()
def recovery(decoder: Float[Tensor, "d_sae d_hidden"], true_dirs: Float[Tensor, "n_features d_hidden"]
             ) -> Float[Tensor, " n_features"]:
    """For each true direction, the highest cosine similarity with any decoder row (mean it for one score)."""
    dec = decoder / decoder.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return (true_dirs @ dec.T).max(dim=1).values  # (n,)


def plot_geometry(model: ToyModel, path: str | Path) -> Path:
    """Save ``W.T @ W`` (feature interference) and the per-feature norms as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = model.W.detach()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [1.2, 1]})
    im = a.imshow((w.T @ w).numpy(), cmap="RdBu", vmin=-1, vmax=1)
    a.set_title("W^T W (feature interference)")
    fig.colorbar(im, ax=a, fraction=0.046)
    b.bar(range(w.shape[1]), w.norm(dim=0).numpy())
    b.set_title(f"feature norms ({model.cfg.n_features} features in {model.cfg.d_hidden} dims)")
    b.set_xlabel("feature")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
