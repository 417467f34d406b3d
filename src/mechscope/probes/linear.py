"""Linear probes (logistic and linear regression) on any hook point at every layer, in plain torch.

    >>> res = probe_layers(model, texts, labels, kind="resid_post")       # labels: (batch, pos), -1 = skip
    >>> print(res.to_markdown()); res.plot("probe.png")

Per layer the probe is fitted on a train split (or k-fold cross-validation) and scored on held-out examples,
next to a control: the same probe fitted on shuffled labels (``control="shuffle"``) or on a control task that
gives each token type a random label (``control="random_token"``, Hewitt & Liang 2019). A property is linearly
decodable at a layer when the probe's accuracy is well above the control's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..models.hooked import HookedModel
from ..models.tokens import Inputs


@dataclass
class ProbeConfig:
    """How probes are fitted and scored."""

    task: Literal["classification", "regression"] = "classification"
    """Logistic regression (accuracy) or ridge regression (R²)."""
    test_fraction: float = 0.25
    """Held-out share of the examples when ``folds`` is None."""
    folds: int | None = None
    """k-fold cross-validation instead of one split (k >= 2)."""
    control: Literal["shuffle", "random_token", "none"] = "shuffle"
    """Control baseline: shuffled labels, a random label per token type, or none."""
    l2: float = 1e-3
    """L2 penalty (on standardised features)."""
    max_iter: int = 100
    """L-BFGS iterations for logistic regression."""
    seed: int = 0
    """Seed of the split, the shuffles and the control labels."""

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"folds must be at least 2 (or None for one split), got {self.folds}")
        if self.control not in ("shuffle", "random_token", "none"):
            raise ValueError(f"control must be 'shuffle', 'random_token' or 'none', got {self.control!r}")
        if self.l2 < 0 or self.max_iter < 1:
            raise ValueError("l2 must be >= 0 and max_iter >= 1")


@dataclass
class Probe:
    """A fitted linear probe: ``predict(x) = ((x - mean) / std) @ weight + bias``."""

    weight: Float[Tensor, "d_in out"]
    bias: Float[Tensor, " out"]
    mean: Float[Tensor, " d_in"]
    std: Float[Tensor, " d_in"]
    task: str

    def scores(self, x: Float[Tensor, "n d_in"]) -> Float[Tensor, "n out"]:
        return ((x.float() - self.mean) / self.std) @ self.weight + self.bias

    def predict(self, x: Float[Tensor, "n d_in"]) -> Tensor:
        s = self.scores(x)
        return s.argmax(-1) if self.task == "classification" else s[:, 0]

    def evaluate(self, x: Tensor, y: Tensor) -> float:
        """Accuracy (classification) or R² (regression)."""
        pred = self.predict(x)
        if self.task == "classification":
            return float((pred == y).float().mean())
        y = y.float()
        return float(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum().clamp_min(1e-12))


def fit_probe(x: Float[Tensor, "n d_in"], y: Tensor, task: str = "classification", l2: float = 1e-3,
              max_iter: int = 100) -> Probe:
    """Fit a logistic-regression (L-BFGS, softmax over classes) or ridge-regression (closed form) probe."""
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std  # (N, D)
    n, d = z.shape
    if task == "regression":
        zb = torch.cat([z, torch.ones(n, 1)], 1)  # (N, D+1)
        reg = l2 * n * torch.eye(d + 1)
        reg[-1, -1] = 0.0
        sol = torch.linalg.solve(zb.T @ zb + reg, zb.T @ y.float()[:, None])  # (D+1, 1)
        return Probe(sol[:-1], sol[-1], mean, std, task)
    classes = int(y.max()) + 1
    w = torch.zeros(d, classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Probe(w.detach(), b.detach(), mean, std, task)


def _splits(n: int, cfg: ProbeConfig) -> list[tuple[Tensor, Tensor]]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    if cfg.folds is None:
        k = max(1, int(round(n * cfg.test_fraction)))
        return [(perm[k:], perm[:k])]
    folds = perm.chunk(cfg.folds)
    return [(torch.cat([f for j, f in enumerate(folds) if j != i]), folds[i]) for i in range(cfg.folds)]


def control_labels(y: Tensor, token_ids: Tensor | None, cfg: ProbeConfig) -> Tensor | None:
    """Labels of the control task (None with ``control="none"``)."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.control == "none":
        return None
    if cfg.control == "shuffle":
        return y[torch.randperm(len(y), generator=g)]
    if token_ids is None:
        raise ValueError("control='random_token' needs the token id of every example")
    types, inverse = token_ids.unique(return_inverse=True)
    pool = y[torch.randint(0, len(y), (len(types),), generator=g)]  # one label per token type, same distribution
    return pool[inverse]


def evaluate_probe(x: Tensor, y: Tensor, cfg: ProbeConfig) -> tuple[float, float]:
    """Mean (train, test) score over the configured split or folds."""
    train_s, test_s = [], []
    for tr, te in _splits(len(y), cfg):
        probe = fit_probe(x[tr], y[tr], cfg.task, cfg.l2, cfg.max_iter)
        train_s.append(probe.evaluate(x[tr], y[tr]))
        test_s.append(probe.evaluate(x[te], y[te]))
    return sum(train_s) / len(train_s), sum(test_s) / len(test_s)


@dataclass
class ProbeResult:
    """Scores per layer: ``train``, ``test`` and the control's ``control`` test score; ``baseline`` is the majority
    class share (classification) or 0 (regression)."""

    layer_labels: list[str]
    train: Tensor
    test: Tensor
    control: Tensor | None
    baseline: float
    metric: str
    hook_kind: str

    def best_layer(self) -> str:
        return self.layer_labels[int(self.test.argmax())]

    def selectivity(self) -> Tensor:
        """Test score minus the control's, per layer."""
        if self.control is None:
            raise ValueError("no control was run (control='none')")
        return self.test - self.control

    def to_markdown(self) -> str:
        head = f"| layer | train {self.metric} | test {self.metric} | control {self.metric} |"
        rows = [f"| {lab} | {float(a):.3f} | {float(b):.3f} | "
                f"{'-' if self.control is None else f'{float(self.control[i]):.3f}'} |"
                for i, (lab, a, b) in enumerate(zip(self.layer_labels, self.train, self.test))]
        return "\n".join([head, "|---|---|---|---|", *rows, f"\nmajority baseline: {self.baseline:.3f}"])

    def plot(self, path: str | Path | None = None):
        from ..display.figures import line_plot

        series = {"train": self.train.tolist(), "test": self.test.tolist()}
        if self.control is not None:
            series["control"] = self.control.tolist()
        return line_plot(series, self.layer_labels, title=f"linear probe on {self.hook_kind}", ylabel=self.metric,
                         path=path)

    def view(self):
        """Interactive view (:mod:`mechscope.display`): train, test and control scores per layer."""
        from .. import display

        title = f"linear probe on {self.hook_kind}"
        if not self.layer_labels:
            return display.empty(title, "no layers were probed")
        series = {"train": self.train.tolist(), "test": self.test.tolist()}
        if self.control is not None:
            series["control (shuffled labels)"] = self.control.tolist()
        series["majority baseline"] = [self.baseline] * len(self.layer_labels)
        best = int(self.test.argmax())
        summary = [("best layer", self.best_layer()), (f"test {self.metric} there", float(self.test[best])),
                   ("majority baseline", self.baseline)]
        if self.control is not None:
            summary.append((f"control {self.metric} there", float(self.control[best])))
        return display.panel(title, [display.line_plot(series, self.layer_labels, title=title, y_label=self.metric)],
                             summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def token_activations(model: HookedModel, inputs: Inputs, kind: str, layers: Sequence[int],
                      labels: Tensor) -> tuple[Float[Tensor, "layers n d"], Tensor, Int[Tensor, " n"]]:
    """Activations of the labelled tokens (``labels >= 0`` of a (batch, pos) tensor) at every layer."""
    names = [f"blocks.{layer}.{kind}" for layer in layers]
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names=names)
    ids = cache.tokens.input_ids
    if labels.shape != ids.shape:
        raise ValueError(f"labels have shape {tuple(labels.shape)} but the inputs tokenise to {tuple(ids.shape)} "
                         f"(batch, pos); give one label per token (-1 to skip a token)")
    keep = labels >= 0
    if cache.tokens.attention_mask is not None:
        keep &= cache.tokens.attention_mask.bool()
    acts = torch.stack([cache[n][keep].flatten(1).float() for n in names])  # (L, N, D)
    return acts, labels[keep], ids[keep]


def probe_layers(model: HookedModel, inputs: Inputs, labels: Tensor, *, kind: str = "resid_post",
                 layers: Sequence[int] | None = None, config: ProbeConfig | None = None) -> ProbeResult:
    """Fit and score a probe on ``blocks.L.<kind>`` for every layer; labels are per token, -1 = not an example."""
    cfg = config or ProbeConfig()
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    labels = torch.as_tensor(labels)
    acts, y, token_ids = token_activations(model, inputs, kind, layers, labels.to(model.cfg.device))
    return score_activations(list(acts.cpu()), y, token_ids, [f"L{layer}" for layer in layers], kind, cfg)


def score_activations(acts: Sequence[Float[Tensor, "n d"]], y: Tensor, token_ids: Tensor | None,
                      layer_labels: Sequence[str], hook_kind: str, config: ProbeConfig | None = None) -> ProbeResult:
    """Fit and score a probe (and its control) on each of ``acts`` (one (n, d) tensor per layer or hook point;
    widths may differ) against the same ``n`` labels; ``token_ids`` is only needed by ``control="random_token"``."""
    cfg = config or ProbeConfig()
    y = y.float().cpu() if cfg.task == "regression" else y.long().cpu()
    if cfg.task == "classification" and len(y.unique()) < 2:
        raise ValueError("the labels hold a single class; a probe needs at least two")
    ctrl_y = control_labels(y, None if token_ids is None else token_ids.cpu(), cfg)
    train, test, ctrl = [], [], []
    for x in acts:
        tr, te = evaluate_probe(x.cpu(), y, cfg)
        train.append(tr)
        test.append(te)
        if ctrl_y is not None:
            ctrl.append(evaluate_probe(x.cpu(), ctrl_y, cfg)[1])
    baseline = float(y.bincount().max() / len(y)) if cfg.task == "classification" else 0.0
    return ProbeResult(list(layer_labels), torch.tensor(train), torch.tensor(test),
                       torch.tensor(ctrl) if ctrl else None, baseline,
                       "accuracy" if cfg.task == "classification" else "R²", hook_kind)
