"""Tuned lens (Belrose et al., 2023): one affine translator per layer, trained so that decoding the translated
residual matches the model's final distribution.

    lens_logits[L] = unembed(final_norm(h_L + h_L @ A_L + b_L))      (A_L, b_L start at zero = the logit lens)

Training minimises KL(final || lens[L]) summed over layers on a text corpus, with a tqdm progress bar and atomic
safetensors checkpoints from which an interrupted run resumes exactly (weights, Adam state, step).

    >>> lens = train_tuned_lens(model, texts, TunedLensConfig(steps=300), checkpoint="lens.safetensors")
    >>> lens.save("lens.safetensors"); lens = TunedLens.load("lens.safetensors")
    >>> compare_lenses(model, lens, prompts).to_markdown()    # per-layer KL, logit lens next to tuned lens
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..files import atomic_write
from ..metrics import kl_divergence
from ..models.hooked import HookedModel
from ..models.tokens import Inputs
from ..validation import check_finite_fields
from .logit_lens import LensResult, layer_labels, logit_lens, residuals, unembed

log = logging.getLogger(__name__)


@dataclass
class TunedLensConfig:
    """Training settings for :func:`train_tuned_lens`."""

    steps: int = 250
    """Optimisation steps (one batch of sequences each)."""
    batch_size: int = 8
    """Sequences per step."""
    seq_len: int = 64
    """Tokens per training sequence (the corpus is tokenised and packed)."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Decoupled weight decay on the translators."""
    checkpoint_every: int = 50
    """Write a checkpoint every this many steps (and at the end) when a checkpoint path is given."""
    seed: int = 0
    """Seed of the data order."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TunedLensConfig.{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TunedLensConfig.lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"TunedLensConfig.weight_decay must be >= 0, got {self.weight_decay}")


class TunedLens(nn.Module):
    """Per-layer affine translators for ``resid_pre`` of every block (the final residual is decoded as is)."""

    def __init__(self, n_layers: int, d_model: int, model_name: str = ""):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_layers, d_model, d_model))  # (L, D, D)
        self.bias = nn.Parameter(torch.zeros(n_layers, d_model))  # (L, D)
        self.model_name = model_name

    @classmethod
    def for_model(cls, model: HookedModel) -> TunedLens:
        return cls(model.cfg.n_layers, model.cfg.d_model, model.cfg.name)

    def translate(self, resid: Float[Tensor, "layers batch pos d_model"]) -> Float[Tensor, "layers batch pos d_model"]:
        """``h + h @ A + b`` per layer (for the block inputs; ``resid`` has one row per layer)."""
        h = resid.float()
        return h + torch.einsum("lbtd,lde->lbte", h, self.weight) + self.bias[:, None, None]

    @torch.no_grad()
    def __call__(self, model: HookedModel, inputs: Inputs) -> LensResult:
        """Tuned-lens logits for every layer of ``inputs`` (last row: the model's own logits)."""
        self._check(model)
        stack, tokens = residuals(model, inputs)  # (L+1, B, T, D)
        translated = torch.cat([self.translate(stack[:-1]), stack[-1:].float()])
        return LensResult(unembed(model, translated), layer_labels(model), tokens, model, name="tuned lens")

    def _check(self, model: HookedModel) -> None:
        n, d = self.weight.shape[0], self.weight.shape[1]
        if (model.cfg.n_layers, model.cfg.d_model) != (n, d):
            raise ValueError(f"this tuned lens is for {n} layers of width {d}; the model has "
                             f"{model.cfg.n_layers} layers of width {model.cfg.d_model}")

    def save(self, path: str | Path, extra: dict[str, Tensor] | None = None, meta: dict | None = None) -> None:
        """Write the translators (and ``extra`` tensors) to a safetensors file atomically."""
        tensors = {"weight": self.weight.detach().contiguous(), "bias": self.bias.detach().contiguous(),
                   **(extra or {})}
        metadata = {"kind": "tuned_lens", "model": self.model_name, **{k: str(v) for k, v in (meta or {}).items()}}
        _atomic_save(tensors, Path(path), metadata)

    @classmethod
    def load(cls, path: str | Path) -> TunedLens:
        """Read a lens written by :meth:`save` (or a training checkpoint)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tuned lens at {path}")
        tensors, meta = _read(path)
        lens = cls(tensors["weight"].shape[0], tensors["weight"].shape[1], meta.get("model", ""))
        with torch.no_grad():
            lens.weight.copy_(tensors["weight"])
            lens.bias.copy_(tensors["bias"])
        return lens


class TunedLensFileError(ValueError):
    """A tuned-lens file (or training checkpoint) that is truncated, corrupt or not a tuned lens; names the file."""


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a tuned-lens file, checked: :class:`TunedLensFileError` names a damaged file."""
    from safetensors import safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises SafetensorError / OSError depending on the damage
        raise TunedLensFileError(f"tuned-lens file {path} is truncated or corrupt: {e}") from None
    if "weight" not in tensors or "bias" not in tensors:
        held = ", ".join(sorted(tensors)) or "nothing"
        raise TunedLensFileError(f"{path} is not a tuned lens file (it holds: {held})")
    w, b = tensors["weight"], tensors["bias"]
    if w.dim() != 3 or w.shape[1] != w.shape[2] or tuple(b.shape) != (w.shape[0], w.shape[1]):
        raise TunedLensFileError(f"{path}: weight {tuple(w.shape)} and bias {tuple(b.shape)} are not a tuned lens's "
                                 f"(layers, d_model, d_model) and (layers, d_model)")
    bad = [k for k in ("weight", "bias") if not tensors[k].is_floating_point() or not bool(tensors[k].isfinite().all())]
    if bad:
        raise TunedLensFileError(f"{path}: {', '.join(bad)} holds NaN/inf or non-float values")
    return tensors, meta


def _atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def pack_corpus(model: HookedModel, texts: Iterable[str] | Tensor, seq_len: int) -> Tensor:
    """Tokenise and pack ``texts`` into ``(n, seq_len)`` sequences (a token tensor is just reshaped)."""
    if isinstance(texts, Tensor):
        ids = texts.flatten()
    else:
        if model.tokenizer is None:
            raise ValueError("this model has no tokenizer; pass the corpus as a token tensor")
        pieces = [torch.tensor(model.tokenizer(t, add_special_tokens=False)["input_ids"], dtype=torch.long)
                  for t in texts if t]
        if not pieces:
            raise ValueError("the corpus is empty")
        ids = torch.cat(pieces)
    n = ids.numel() // seq_len
    if n < 1:
        raise ValueError(f"the corpus has {ids.numel()} tokens, fewer than one sequence of {seq_len}")
    return ids[: n * seq_len].view(n, seq_len)


def _kl(final_logp: Tensor, logits: Tensor) -> Tensor:
    logp = logits.float().log_softmax(-1)
    return kl_divergence(final_logp, logp).mean()


def train_tuned_lens(model: HookedModel, corpus: Iterable[str] | Tensor, config: TunedLensConfig | None = None, *,
                     checkpoint: str | Path | None = None, resume: bool = True, progress: bool = True) -> TunedLens:
    """Train a tuned lens on ``corpus``; resumes from ``checkpoint`` when it exists and ``resume`` is set."""
    cfg = config or TunedLensConfig()
    data = pack_corpus(model, corpus, cfg.seq_len).to(model.cfg.device)  # (N, S)
    lens = TunedLens.for_model(model).to(model.cfg.device)
    opt = torch.optim.AdamW(lens.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        start = _restore(lens, opt, Path(checkpoint))
        log.info("resuming tuned-lens training from step %d (%s)", start, checkpoint)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))
    n = model.cfg.n_layers
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="tuned lens", disable=not progress)
    for step in bar:
        idx = order[torch.arange(step * cfg.batch_size, (step + 1) * cfg.batch_size) % len(data)]
        stack, _ = residuals(model, data[idx])  # (L+1, B, S, D)
        with torch.no_grad():
            final_logp = unembed(model, stack[-1]).float().log_softmax(-1)  # (B, S, V)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for layer in range(n):  # one layer at a time: only one layer's logits in memory
            h = stack[layer].float()  # (B, S, D)
            t = h + h @ lens.weight[layer] + lens.bias[layer]
            loss = _kl(final_logp, unembed(model, t))
            loss.backward()
            total += float(loss.detach())
        opt.step()
        bar.set_postfix(kl=f"{total / n:.3f}")
        done = step + 1
        if checkpoint is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            _checkpoint(lens, opt, Path(checkpoint), done, cfg)
    return lens


def _checkpoint(lens: TunedLens, opt: torch.optim.Optimizer, path: Path, step: int, cfg: TunedLensConfig) -> None:
    extra = {}
    for name, p in (("weight", lens.weight), ("bias", lens.bias)):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                extra[f"adam.{name}.{key}"] = st[key].contiguous()
        if "step" in st:
            extra[f"adam.{name}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    lens.save(path, extra, meta={"step": step, "config": json.dumps(asdict(cfg))})


def _restore(lens: TunedLens, opt: torch.optim.Optimizer, path: Path) -> int:
    tensors, meta = _read(path)
    if tensors["weight"].shape != lens.weight.shape:
        raise ValueError(f"checkpoint {path} has translators {tuple(tensors['weight'].shape)}, the model needs "
                         f"{tuple(lens.weight.shape)}")
    with torch.no_grad():
        lens.weight.copy_(tensors["weight"])
        lens.bias.copy_(tensors["bias"])
    for name, p in (("weight", lens.weight), ("bias", lens.bias)):
        if f"adam.{name}.exp_avg" in tensors:
            opt.state[p] = {"step": tensors[f"adam.{name}.step"].reshape(()).clone(),
                            "exp_avg": tensors[f"adam.{name}.exp_avg"].to(p.device),
                            "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].to(p.device)}
    return int(meta.get("step", 0))


@dataclass
class LensComparison:
    """Mean KL to the final distribution per layer for the logit lens and the tuned lens."""

    layer_labels: list[str]
    logit_lens_kl: Tensor
    tuned_lens_kl: Tensor

    def to_markdown(self) -> str:
        rows = [f"| {lab} | {float(a):.4f} | {float(b):.4f} |"
                for lab, a, b in zip(self.layer_labels, self.logit_lens_kl, self.tuned_lens_kl)]
        return "\n".join(["| layer | logit lens KL | tuned lens KL |", "|---|---|---|", *rows])

    def plot(self, path: str | Path | None = None):
        from ..display.figures import line_plot

        return line_plot({"logit lens": self.logit_lens_kl.tolist(), "tuned lens": self.tuned_lens_kl.tolist()},
                         self.layer_labels, title="KL to the final distribution", ylabel="KL (nats)", path=path)

    def view(self):
        """Interactive view (:mod:`mechscope.display`): mean KL per layer of both lenses."""
        from .. import display

        if not self.layer_labels:
            return display.empty("logit lens vs tuned lens", "no layers")
        return display.line_plot({"logit lens": self.logit_lens_kl.tolist(), "tuned lens": self.tuned_lens_kl.tolist()},
                                 self.layer_labels, title="KL to the final distribution", y_label="KL (nats)")

    def _repr_html_(self) -> str:
        return self.view().html()


def compare_lenses(model: HookedModel, lens: TunedLens, inputs: Inputs) -> LensComparison:
    """Per-layer KL of the logit lens and of ``lens`` on ``inputs``."""
    plain, tuned = logit_lens(model, inputs), lens(model, inputs)
    return LensComparison(plain.layer_labels, plain.mean_kl(), tuned.mean_kl())
