"""ACDC (Conmy et al. 2023): automated circuit discovery over heads and MLPs, with edge-level patching.

The computational graph has one node per sender (``embed``: the block-0 residual input, ``L.h``: head ``h`` of
layer ``L`` (its ``z @ W_O`` share), ``L.mlp``) and per receiver (every head and MLP, reading the residual, and
``logits``, reading the final residual). An edge ``sender -> receiver`` exists when the sender writes the residual
before the receiver reads it.

Edge-level patching gives *each receiver its own input*::

    input(receiver) = constants + sum over senders s of  (kept(s -> receiver) ? out_s : ablated_s)

where ``out_s`` is the sender's output in the same (patched) forward pass and ``ablated_s`` its output on the
corrupted inputs (``resample``), its mean over the batch (``mean``) or zero (``zero``). In one HF forward pass the
batch holds ``n_heads + 2`` copies of the prompts: copy ``h`` feeds its own residual input to head ``h`` of every
layer (the other heads' outputs of that copy are discarded), copy ``n_heads`` the MLPs, and the last copy the
unembedding; hooks at ``resid_pre`` / ``attn.z`` / ``resid_mid`` / ``mlp_out`` / the last ``resid_post`` assemble
the inputs layer by layer. Attention biases (``b_O``) are constants. With every edge kept the result equals the
model's own logits (up to float rounding).

The greedy pass visits receivers from the output backwards, and each receiver's incoming edges from the latest
sender back; an edge is removed when removing it raises the loss (KL to the full model, or minus a logit
difference, or a user metric to minimise) by less than ``threshold``. Receivers left without outgoing edges lose
their incoming edges without a test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..metrics import kl_divergence
from ..models.hooked import HookedModel
from ..models.hooking import Hook

log = logging.getLogger(__name__)


@dataclass
class AcdcConfig:
    """ACDC options."""

    threshold: float = 0.01
    """Remove an edge when the loss rises by less than this."""
    metric: Literal["kl", "logit_diff"] = "kl"
    """``kl``: KL(full model || circuit) at the scored positions; ``logit_diff``: minus (answer - wrong) logits."""
    ablation: Literal["resample", "mean", "zero"] = "resample"
    """What a removed edge carries: the sender's output on corrupted inputs, its batch mean, or zero."""
    include_mlps: bool = True
    """Include MLPs as senders and receivers."""


@dataclass
class AcdcResult:
    """Kept edges, and the metric of the full model, the circuit alone and the empty circuit."""

    edges: list[tuple[str, str]]
    """Kept ``(sender, receiver)`` edges."""
    all_edges: list[tuple[str, str]]
    loss_full: float
    """The metric of the model itself on the clean prompts."""
    loss_circuit: float
    """The metric with only the kept edges."""
    loss_empty: float
    """The metric with every edge ablated: the corrupted run under ``resample`` ablation, except that with
    ``include_mlps=False`` the MLPs are not in the graph, so their outputs are left out of the final residual."""
    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    """Loss increase measured when each edge was tested."""

    @property
    def recovered(self) -> float:
        """Share of the full model's performance the circuit keeps: (empty - circuit) / (empty - full)."""
        return (self.loss_empty - self.loss_circuit) / max(self.loss_empty - self.loss_full, 1e-12)

    def to_json(self) -> dict:
        return {"edges": [list(e) for e in self.edges], "n_edges_total": len(self.all_edges),
                "loss_full": self.loss_full, "loss_circuit": self.loss_circuit, "loss_empty": self.loss_empty,
                "recovered": self.recovered, "scores": {f"{s}->{r}": v for (s, r), v in self.scores.items()}}

    def view(self, max_edges: int = 40):
        """Interactive view (:mod:`mechscope.display`): the three metrics and the share recovered, the kept edges
        by the loss increase measured when each was tested (bars, hover for the value), and a table of them; an
        explicit empty view when the graph had no edges."""
        from .. import display

        title = f"ACDC circuit: {len(self.edges)} of {len(self.all_edges)} edges kept"
        if not self.all_edges:
            return display.empty("ACDC circuit", "the graph had no edges to test")
        summary = [("metric, full model", self.loss_full), ("metric, circuit", self.loss_circuit),
                   ("metric, empty circuit", self.loss_empty), ("recovered", self.recovered),
                   ("edges kept", f"{len(self.edges)} of {len(self.all_edges)}")]
        kept = sorted(self.edges, key=lambda e: -abs(self.scores.get(e, 0.0)))[:max_edges]
        children = []
        if kept:
            children.append(display.bar_chart([f"{s} -> {r}" for s, r in kept],
                                              [self.scores.get(e) for e in kept], value_name="loss increase",
                                              title="kept edges: loss increase when tested"))
            children.append(display.table(["sender", "receiver", "loss increase"],
                                          [[s, r, self.scores.get((s, r))] for s, r in kept], title="kept edges"))
        else:
            children.append(display.empty("kept edges", "every edge was pruned (no circuit left)"))
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


class EdgePatcher:
    """Runs the model with a given set of kept edges (see the module docstring)."""

    def __init__(self, model: HookedModel, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"] | None,
                 ablation: str = "resample", include_mlps: bool = True):
        if model.adapter.attn_out_norm is not None:
            raise ValueError(f"{model.adapter.name}: per-head outputs pass through a post-attention norm, so heads "
                             "do not add into the residual; ACDC supports families without one")
        if ablation == "resample" and corrupt is None:
            raise ValueError("ablation='resample' needs corrupted inputs")
        self.model, self.clean = model, clean
        c = model.cfg
        self.L, self.H, self.parallel = c.n_layers, c.n_heads, c.parallel_residual
        self.mlps = include_mlps
        self.senders = ["embed"]
        self.receivers: list[str] = []
        for l in range(self.L):
            self.senders += [f"{l}.{h}" for h in range(self.H)]
            self.receivers += [f"{l}.{h}" for h in range(self.H)]
            if include_mlps:
                self.senders.append(f"{l}.mlp")
                self.receivers.append(f"{l}.mlp")
        self.receivers.append("logits")
        self.edges = [(s, r) for r in self.receivers for s in self.senders if self._before(s, r)]
        self.W_O = [model.W_O(l).detach() for l in range(self.L)]  # (H, dh, D)
        self.b_O = [model.b_O(l).detach() if model.b_O(l) is not None else None for l in range(self.L)]
        with torch.no_grad():
            self.clean_outs, self.full_logits = self._outputs(clean)
            if ablation == "resample":
                self.ablated, _ = self._outputs(corrupt)
            elif ablation == "mean":
                self.ablated = {k: v.mean(0, keepdim=True).expand_as(v) for k, v in self.clean_outs.items()}
            elif ablation == "zero":
                self.ablated = {k: torch.zeros_like(v) for k, v in self.clean_outs.items()}
            else:
                raise ValueError(f"ablation must be resample, mean or zero, got {ablation!r}")

    # ------------------------------------------------------------------ structure
    @staticmethod
    def _pos(name: str) -> tuple[int, int]:
        """(layer, stage): stage 0 = heads, 1 = mlp; embed is (-1, 1), logits (inf, 0)."""
        if name == "embed":
            return (-1, 1)
        if name == "logits":
            return (10**9, 0)
        layer, what = name.split(".")
        return (int(layer), 1 if what == "mlp" else 0)

    def _before(self, s: str, r: str) -> bool:
        (ls, ss), (lr, sr) = self._pos(s), self._pos(r)
        if self.parallel and sr == 1 and lr < 10**9:
            return ls < lr  # parallel blocks: the MLP reads the block input
        return (ls, ss) < (lr, sr)

    # ------------------------------------------------------------------ plain runs
    def _outputs(self, tokens: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        names = ["blocks.0.resid_pre"] + [f"blocks.{l}.attn.z" for l in range(self.L)]
        names += [f"blocks.{l}.mlp_out" for l in range(self.L)] if self.mlps else []
        logits, cache = self.model.run_with_cache(tokens, names=names + ["logits"], stop_early=False)
        outs = {"embed": cache["blocks.0.resid_pre"].float()}
        for l in range(self.L):
            z = cache[f"blocks.{l}.attn.z"].float()  # (B, T, H, dh)
            res = torch.einsum("bthd,hdm->bthm", z, self.W_O[l].float())
            for h in range(self.H):
                outs[f"{l}.{h}"] = res[:, :, h]
            if self.mlps:
                outs[f"{l}.mlp"] = cache[f"blocks.{l}.mlp_out"].float()
        return outs, logits.float()

    # ------------------------------------------------------------------ patched run
    @torch.no_grad()
    def run(self, kept: set[tuple[str, str]]) -> Float[Tensor, "batch pos vocab"]:
        """Logits of the circuit with edges ``kept`` (every other edge carries its ablated value)."""
        B, H, L = self.clean.shape[0], self.H, self.L
        C = H + 2
        tokens = self.clean.repeat(C, 1)  # copy-major: index c * B + b
        outs: dict[str, Tensor] = {}
        dtype = self.full_logits.dtype

        def gather(r: str, const: Tensor | float) -> Tensor:
            total = const
            for s in self.senders:
                if not self._before(s, r):
                    continue
                src = outs[s] if (s, r) in kept else self.ablated[s]
                total = total + src
            return total  # (B, T, D)

        def bias_sum(upto: int, include_this: bool) -> Tensor | float:
            tot: Tensor | float = 0.0
            for l in range(upto + (1 if include_this else 0)):
                if self.b_O[l] is not None:
                    tot = tot + self.b_O[l].float()
            return tot

        def resid_pre(act: Tensor, hook: Hook) -> Tensor:
            l = hook.layer
            assert l is not None
            if l == 0:
                outs["embed"] = act.view(C, B, *act.shape[1:])[0].float()
            new = act.view(C, B, *act.shape[1:]).clone()
            for h in range(H):
                new[h] = gather(f"{l}.{h}", bias_sum(l, False)).to(act.dtype)
            if self.mlps and self.parallel:
                new[H] = gather(f"{l}.mlp", bias_sum(l, False)).to(act.dtype)
            return new.view_as(act)

        def z_hook(act: Tensor, hook: Hook) -> None:
            l = hook.layer
            assert l is not None
            z = act.view(C, B, *act.shape[1:]).float()  # (C, B, T, H, dh)
            for h in range(H):
                outs[f"{l}.{h}"] = z[h, :, :, h] @ self.W_O[l][h].float()

        def resid_mid(act: Tensor, hook: Hook) -> Tensor:
            l = hook.layer
            assert l is not None
            new = act.view(C, B, *act.shape[1:]).clone()
            new[H] = gather(f"{l}.mlp", bias_sum(l, True)).to(act.dtype)
            return new.view_as(act)

        def mlp_out(act: Tensor, hook: Hook) -> None:
            outs[f"{hook.layer}.mlp"] = act.view(C, B, *act.shape[1:])[H].float()

        def resid_post(act: Tensor, hook: Hook) -> Tensor:
            new = act.view(C, B, *act.shape[1:]).clone()
            new[H + 1] = gather("logits", bias_sum(L, False)).to(act.dtype)
            return new.view_as(act)

        hooks = [(f"blocks.{l}.resid_pre", resid_pre) for l in range(L)]
        hooks += [(f"blocks.{l}.attn.z", z_hook) for l in range(L)]
        if self.mlps:
            if not self.parallel:
                hooks += [(f"blocks.{l}.resid_mid", resid_mid) for l in range(L)]
            hooks += [(f"blocks.{l}.mlp_out", mlp_out) for l in range(L)]
        hooks.append((f"blocks.{L - 1}.resid_post", resid_post))
        with self.model.hooks(hooks):
            logits = self.model(tokens)
        return logits.view(C, B, *logits.shape[1:])[H + 1].to(dtype)


def kl_loss(full: Tensor, new: Tensor, positions: Tensor | None = None) -> float:
    """Mean KL(full || new) over batch and the scored positions."""
    if positions is not None:
        full, new = full[:, positions], new[:, positions]
    lp, lq = full.log_softmax(-1), new.log_softmax(-1)
    return float(kl_divergence(lp, lq).mean())


def acdc(model: HookedModel, clean: Tensor, corrupt: Tensor | None = None, cfg: AcdcConfig | None = None, *,
         positions: Tensor | None = None, answers: Tensor | None = None, wrong: Tensor | None = None,
         loss_fn: Callable[[Tensor], float] | None = None) -> AcdcResult:
    """Run ACDC on ``clean`` prompts (batch, pos); see the module docstring.

    ``positions`` selects the scored positions (default: all for KL, last for logit_diff). ``answers`` / ``wrong``
    (batch,) are the token ids of the logit difference. ``loss_fn(logits) -> float`` overrides the metric.
    """
    cfg = cfg or AcdcConfig()
    p = EdgePatcher(model, clean, corrupt, cfg.ablation, cfg.include_mlps)
    if loss_fn is None:
        if cfg.metric == "kl":
            loss_fn = lambda lg: kl_loss(p.full_logits, lg, positions)  # noqa: E731
        else:
            if answers is None or wrong is None:
                raise ValueError("metric='logit_diff' needs answers= and wrong= token ids")
            pos = positions if positions is not None else torch.tensor([-1])
            b = torch.arange(len(answers))

            def loss_fn(lg: Tensor) -> float:
                x = lg[:, pos].mean(1)  # (B, V)
                return -float((x[b, answers] - x[b, wrong]).mean())
    kept = set(p.edges)
    loss_full = loss_fn(p.full_logits)
    current = loss_fn(p.run(kept))
    log.info("ACDC over %d edges; full-model loss %.4f, all-edges replay %.4f", len(kept), loss_full, current)
    scores: dict[tuple[str, str], float] = {}
    order = list(reversed(p.receivers))
    for r in tqdm(order, desc="ACDC receivers", leave=False):
        if r != "logits" and not any(e[0] == r for e in kept):
            for e in [e for e in kept if e[1] == r]:
                kept.discard(e)
            continue
        for s in reversed([s for s in p.senders if (s, r) in kept]):
            trial = kept - {(s, r)}
            new = loss_fn(p.run(trial))
            scores[(s, r)] = new - current
            if new - current < cfg.threshold:
                kept, current = trial, new
    # senders whose only edges led to dead receivers
    changed = True
    while changed:
        changed = False
        for r in p.receivers[:-1]:
            if not any(e[0] == r for e in kept) and any(e[1] == r for e in kept):
                kept = {e for e in kept if e[1] != r}
                changed = True
    loss_circuit = loss_fn(p.run(kept))
    loss_empty = loss_fn(p.run(set()))
    edges = [e for e in p.edges if e in kept]
    return AcdcResult(edges, p.edges, loss_full, loss_circuit, loss_empty, scores)


def draw(result: AcdcResult, path: str, n_layers: int, n_heads: int, title: str = "ACDC circuit") -> str:
    """Draw the kept edges with matplotlib, one row per layer (embed at the bottom, logits on top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xy(name: str) -> tuple[float, float]:
        if name == "embed":
            return (n_heads / 2, 0.0)
        if name == "logits":
            return (n_heads / 2, 2 * n_layers + 1.0)
        layer, what = name.split(".")
        if what == "mlp":
            return (n_heads / 2, 2 * int(layer) + 2.0)
        return (float(what), 2 * int(layer) + 1.0)

    nodes = sorted({n for e in result.edges for n in e} | {"embed", "logits"})
    fig, ax = plt.subplots(figsize=(max(5, n_heads * 0.9), max(4, n_layers * 1.2)))
    for s, r in result.edges:
        (x0, y0), (x1, y1) = xy(s), xy(r)
        w = result.scores.get((s, r), 0.0)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "->", "lw": 1 + 3 * min(1.0, abs(w) * 5), "alpha": 0.6})
    for n in nodes:
        x, y = xy(n)
        ax.scatter([x], [y], s=500, c="tab:orange" if "mlp" in n else "tab:blue", zorder=3)
        ax.text(x, y, n, ha="center", va="center", fontsize=7, zorder=4)
    ax.set_title(f"{title}: {len(result.edges)}/{len(result.all_edges)} edges, recovered {result.recovered:.2f}")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
