"""Steering with features: add directions, clamp features, contrast prompts, and measure what moved.

- :func:`feature_vector`: a feature's decoder direction scaled by ``strength * max_activation`` (the formula
  researchers use: ``strength=1`` adds the feature as strongly as it ever fires), added at the hook point the
  dictionary writes (``hook_name_out``: the residual for SAEs, ``mlp_out`` for transcoders).
- :func:`contrastive_vector`: the mean difference of activations between paired prompts (at the last token, or
  averaged over positions).
- :func:`clamped`: a context manager holding features at fixed values through encode/decode, with the
  dictionary's error term kept so everything else passes through unchanged.
- :func:`steer`: several vectors and clamps at once; next-token probabilities of target tokens and the watched
  feature's activation with and without steering, and both generations side by side, as a :class:`SteeringResult`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..validation import check_finite
from .logits import decoder_directions
from .source import FeatureError, FeatureSource


def _finite(value: Any, name: str) -> float:
    """``value`` as a float, or :class:`FeatureError` naming ``name`` when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FeatureError(f"{name} must be a number, got {value!r}")
    try:
        check_finite(value, name)
    except ValueError as e:
        raise FeatureError(str(e)) from None
    return float(value)


@dataclass
class SteeringVector:
    """A vector added to every position at one hook point."""

    hook_name: str
    vector: Float[Tensor, " d_model"]
    label: str = ""


def feature_vector(dictionary: Any, feature: int, strength: float, max_activation: float | None = None,
                   stats: Any = None) -> SteeringVector:
    """``strength * max_activation * W_dec[feature]`` at the dictionary's output hook point.

    ``max_activation`` defaults to ``stats.max_act[feature]`` (a :class:`~.stats.FeatureStats`).
    """
    dirs = decoder_directions(dictionary)
    f = FeatureSource([], dictionary.encode, dirs.shape[0]).check_feature(feature)
    strength = _finite(strength, "strength")
    where = "max_activation"
    if max_activation is None:
        if stats is None:
            raise FeatureError("give max_activation= or stats= (the feature's max activation sets the scale)")
        max_activation, where = float(stats.max_act[f]), f"the max activation of feature {f} in stats"
    max_activation = _finite(max_activation, where)
    if max_activation <= 0:
        raise FeatureError(f"{where} must be positive (the feature's largest activation sets the scale), got "
                           f"{max_activation!r}" + ("; the feature never fired" if max_activation == 0 else ""))
    hook = dictionary.hook_name_out
    if hook is None:
        raise FeatureError("the dictionary records no output hook point; set dictionary.cfg.hook_name")
    return SteeringVector(hook, dirs[f] * (strength * max_activation), f"feature {f} x {strength:g}")


@torch.no_grad()
def contrastive_vector(model: Any, hook_name: str, positive: Sequence[str], negative: Sequence[str],
                       strength: float = 1.0, position: Literal["last", "mean"] = "last") -> SteeringVector:
    """Mean over pairs of ``act(positive_i) - act(negative_i)`` at ``hook_name``, times ``strength``."""
    if len(positive) != len(negative) or not positive:
        raise FeatureError(f"contrastive steering needs pairs: got {len(positive)} positive and "
                           f"{len(negative)} negative prompts")
    strength = _finite(strength, "strength")
    if any(not isinstance(p, str) or not p for p in [*positive, *negative]):
        raise FeatureError("contrastive prompts must be non-empty strings")
    if position not in ("last", "mean"):
        raise FeatureError(f"position must be 'last' or 'mean', got {position!r}")
    name = model.resolve(hook_name).name

    def mean_act(prompts: Sequence[str]) -> Tensor:
        out = []
        for p in prompts:
            _, cache = model.run_with_cache(p, names=[name])
            a = cache[name][0].float()  # (T, D)
            out.append(a[-1] if position == "last" else a.mean(0))
        return torch.stack(out)  # (N, D)

    diff = (mean_act(positive) - mean_act(negative)).mean(0)
    return SteeringVector(name, diff * strength, f"contrast x {strength:g}")


def steering_hooks(vectors: Sequence[SteeringVector]) -> list[tuple[str, Any]]:
    """Hook pairs adding every vector (summed per hook point) to all positions."""
    by_name: dict[str, Tensor] = {}
    for v in vectors:
        by_name[v.hook_name] = by_name.get(v.hook_name, 0) + v.vector.float()

    def adder(vec: Tensor):
        def fn(act: Tensor, hook: Any) -> Tensor:
            return act + vec.to(act.device, act.dtype)
        return fn

    return [(name, adder(vec)) for name, vec in by_name.items()]


@contextlib.contextmanager
def clamped(model: Any, dictionary: Any, values: dict[int, float]) -> Iterator[Any]:
    """Hold ``{feature: value}`` fixed at every position, through encode/decode with the error term kept."""
    src = FeatureSource([], dictionary.encode, dictionary.d_sae)
    if not values:
        raise FeatureError("give at least one {feature: value} to clamp")
    idx = torch.tensor([src.check_feature(f) for f in values], dtype=torch.long)
    val = torch.tensor([_finite(v, f"clamp value of feature {f}") for f, v in values.items()], dtype=torch.float32)

    def edit(f: Tensor) -> Tensor:
        f = f.clone()
        f[..., idx] = val.to(f.dtype)
        return f

    with model.spliced(dictionary, keep_error=True, edit=edit) as state:
        yield state


@dataclass
class SteeringResult:
    """How steering changed the next-token distribution, the watched feature and the generation."""

    prompt: str
    labels: list[str]
    """What was applied (vector labels and clamps)."""
    target_tokens: list[str] = field(default_factory=list)
    baseline_probs: list[float] = field(default_factory=list)
    """Next-token probability of each target after the prompt, without steering."""
    steered_probs: list[float] = field(default_factory=list)
    feature: int | None = None
    baseline_feature_act: float | None = None
    """Mean activation of the watched feature over the prompt's positions, without steering."""
    steered_feature_act: float | None = None
    baseline_text: str | None = None
    steered_text: str | None = None

    @property
    def prob_ratio(self) -> list[float]:
        return [s / b if b > 0 else float("inf") for b, s in zip(self.baseline_probs, self.steered_probs)]

    def summary(self) -> str:
        """A plain-text report, generations side by side."""
        lines = [f"prompt: {self.prompt!r}", f"steering: {', '.join(self.labels) or 'none'}"]
        for t, b, s in zip(self.target_tokens, self.baseline_probs, self.steered_probs):
            lines.append(f"  p({t!r}): {b:.4g} -> {s:.4g}")
        if self.feature is not None:
            lines.append(f"  feature {self.feature}: {self.baseline_feature_act:.4g} -> {self.steered_feature_act:.4g}")
        if self.baseline_text is not None:
            lines += [f"baseline: {self.baseline_text!r}", f"steered:  {self.steered_text!r}"]
        return "\n".join(lines)

    def view(self):
        """Interactive view (:mod:`mechscope.display`): target probabilities, the watched feature and both
        generations, with and without steering."""
        from .. import display

        title = "steering"
        if not (self.target_tokens or self.feature is not None or self.baseline_text is not None):
            return display.empty(title, "nothing was measured: give targets=, watch= or max_new_tokens > 0")
        children = []
        if self.target_tokens:
            rows = [[repr(t), b, s, r] for t, b, s, r in zip(self.target_tokens, self.baseline_probs,
                                                            self.steered_probs, self.prob_ratio)]
            children.append(display.table(["target", "p without", "p with steering", "ratio"], rows,
                                          title="next-token probability of each target"))
        if self.baseline_text is not None:
            children.append(display.text(f"without: {self.prompt}{self.baseline_text}\n"
                                         f"with:    {self.prompt}{self.steered_text}", title="generations"))
        summary: list[tuple[str, Any]] = [("prompt", self.prompt), ("steering", ", ".join(self.labels) or "none")]
        if self.feature is not None and self.baseline_feature_act is not None:
            summary.append((f"feature {self.feature} activation", f"{self.baseline_feature_act:.4g} -> "
                                                                   f"{self.steered_feature_act:.4g}"))
        summary += [(f"p({t!r})", f"{b:.4g} -> {s:.4g}") for t, b, s in
                    zip(self.target_tokens, self.baseline_probs, self.steered_probs)][:4]
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def _target_ids(model: Any, targets: Sequence[str | int]) -> list[int]:
    return [t if isinstance(t, int) else model.to_single_token(t) for t in targets]


@torch.no_grad()
def steer(model: Any, prompt: str, vectors: Sequence[SteeringVector] = (), *, clamp: tuple[Any, dict[int, float]]
          | None = None, targets: Sequence[str | int] = (), watch: tuple[Any, int] | None = None,
          max_new_tokens: int = 0, do_sample: bool = False, seed: int | None = 0) -> SteeringResult:
    """Run ``prompt`` with and without steering (``vectors`` added, features ``clamp``-ed) and compare.

    ``watch=(dictionary, feature)`` records that feature where the dictionary reads (after the steering when both
    use the same hook point). ``max_new_tokens > 0`` also generates both continuations.
    """
    if not isinstance(prompt, str) or not prompt:
        raise FeatureError(f"prompt must be a non-empty string, got {prompt!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise FeatureError(f"max_new_tokens must be an integer >= 0 (0: no generation), got {max_new_tokens!r}")
    for i, v in enumerate(vectors):
        if not isinstance(v, SteeringVector):
            raise FeatureError(f"vectors[{i}] is a {type(v).__name__}, not a SteeringVector (feature_vector / "
                               f"contrastive_vector make them)")
        if not bool(torch.isfinite(v.vector).all()):
            raise FeatureError(f"steering vector {v.label or i!r} holds NaN or inf values")
    if clamp is not None:
        for f, value in clamp[1].items():
            _finite(value, f"clamp value of feature {f}")
    ids = _target_ids(model, targets)
    hooks = steering_hooks(vectors)
    labels = [v.label for v in vectors] + ([f"clamp {clamp[1]}"] if clamp else [])
    watch_src = FeatureSource.from_dictionary(watch[0], model) if watch is not None else None
    feat = watch_src.check_feature(watch[1]) if watch_src is not None else None

    def run(steered: bool) -> tuple[list[float], float | None, str | None]:
        seen: list[Tensor] = []
        extra = []
        if watch_src is not None:
            def record(act: Tensor, hook: Any) -> None:
                seen.append(watch_src(act)[0, :, feat])  # (T,)
            extra = [(watch_src.hook_names[0], record)]
        ctx = clamped(model, *clamp) if (steered and clamp) else contextlib.nullcontext()
        with ctx, model.hooks((hooks if steered else []) + extra):
            logits = model(prompt)
        probs = logits[0, -1].float().softmax(-1)
        act = float(seen[0].mean()) if seen else None
        text = None
        if max_new_tokens > 0:
            gen_ctx = clamped(model, *clamp) if (steered and clamp) else contextlib.nullcontext()
            with gen_ctx:
                text = model.generate(prompt, max_new_tokens, do_sample=do_sample, seed=seed,
                                      fwd_hooks=hooks if steered else [])
        return [float(probs[i]) for i in ids], act, text

    base_p, base_a, base_t = run(False)
    st_p, st_a, st_t = run(True)
    tokens = [model.tokenizer.decode([i]) for i in ids]
    return SteeringResult(prompt, labels, tokens, base_p, st_p, feat, base_a, st_a, base_t, st_t)
