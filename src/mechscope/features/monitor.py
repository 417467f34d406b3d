"""Feature monitors: watch chosen features (each with a threshold) on inputs or during generation.

The feature-based detector researchers build for unwanted behaviours: a feature *fires* on a token when its
activation exceeds its threshold; each watched feature gets a score per text, ``max activation / threshold``
(>= 1 means it fired somewhere). The first position and BOS tokens are ignored: their activations are outliers
(an attention sink), as in :class:`~.stats.StatsConfig` ``skip_first``.

    mon = FeatureMonitor(model, sae, {123: 2.5, 456: 1.0})
    report = mon.scan(["some text", ...])[0]; report.fired[123] -> [Firing(position, token, activation, ...)]
    text, report = mon.generate("prompt", max_new_tokens=30)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .source import FeatureError, FeatureSource, token_batches


@dataclass
class Firing:
    """One token where a watched feature exceeded its threshold."""

    feature: int
    position: int
    token: str
    activation: float
    score: float
    """``activation / threshold``."""


@dataclass
class MonitorResult:
    """What the monitor saw on one text."""

    text: str
    tokens: list[str]
    fired: dict[int, list[Firing]] = field(default_factory=dict)
    """Watched feature -> its firings (features that never fired are absent)."""
    scores: dict[int, float] = field(default_factory=dict)
    """Watched feature -> max activation / threshold over the text."""
    max_acts: dict[int, float] = field(default_factory=dict)

    @property
    def any_fired(self) -> bool:
        return bool(self.fired)

    def summary(self) -> str:
        lines = [f"{len(self.tokens)} tokens; fired: {sorted(self.fired) or 'none'}"]
        for f, score in sorted(self.scores.items(), key=lambda kv: -kv[1]):
            where = ", ".join(f"{x.position}:{x.token!r}({x.activation:.3g})" for x in self.fired.get(f, [])[:8])
            lines.append(f"  feature {f}: score {score:.3f}  {where}")
        return "\n".join(lines)

    def view(self):
        """Interactive view (:mod:`mechscope.display`): every watched feature's score and where it fired."""
        from .. import display

        title = f"feature monitor: {'fired' if self.any_fired else 'nothing fired'}"
        if not self.scores:
            return display.empty("feature monitor", "no feature was watched on this text")
        rows = [[f, score, self.max_acts.get(f), len(self.fired.get(f, [])),
                 ", ".join(f"{x.position}:{x.token!r}" for x in self.fired.get(f, [])[:6]) or "–"]
                for f, score in sorted(self.scores.items(), key=lambda kv: -kv[1])]
        children = [display.table(["feature", "score (max / threshold)", "max activation", "firings", "where"], rows,
                                  title="watched features"),
                    display.text(self.text, title=f"text ({len(self.tokens)} tokens)")]
        summary = [("tokens", len(self.tokens)), ("fired", ", ".join(map(str, sorted(self.fired))) or "none")]
        summary += [(f"feature {r[0]} score", r[1]) for r in rows[:4]]
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


class FeatureMonitor:
    """Watch ``{feature: threshold}`` of a dictionary (or :class:`FeatureSource`) on a model."""

    def __init__(self, model: Any, source: Any, watches: Mapping[int, float]):
        self.model = model
        self.source = source if isinstance(source, FeatureSource) else FeatureSource.from_dictionary(source, model)
        if len(self.source.hook_names) != 1:
            raise FeatureError("a monitor reads one hook point; this source reads several")
        if not watches:
            raise FeatureError("give at least one {feature: threshold} to watch")
        self.features = [self.source.check_feature(f) for f in watches]
        for f, t in watches.items():
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise FeatureError(f"the threshold of feature {f} must be a finite positive activation, got {t!r}")
        self.thresholds = torch.tensor([float(t) for t in watches.values()])
        self.idx = torch.tensor(self.features, dtype=torch.long)
        tok = model.tokenizer
        self.bos = tok.bos_token_id if tok is not None else None

    def _report(self, text: str, ids: list[int], acts: Tensor) -> MonitorResult:
        """``acts``: (T, n_watched) activations for the token ``ids``."""
        strs = [self.model.tokenizer.decode([i]) for i in ids]
        keep = torch.tensor([i != self.bos and p > 0 for p, i in enumerate(ids)])
        acts = acts.float() * keep[:, None]  # (T, F)
        thr = self.thresholds
        res = MonitorResult(text, strs)
        maxes = acts.max(0).values if acts.shape[0] else torch.zeros(len(self.features))
        hits = (acts > thr).nonzero().tolist()
        for pos, j in hits:
            f = self.features[j]
            a = float(acts[pos, j])
            res.fired.setdefault(f, []).append(Firing(f, pos, strs[pos], a, a / float(thr[j])))
        for j, f in enumerate(self.features):
            res.max_acts[f] = float(maxes[j])
            res.scores[f] = float(maxes[j] / thr[j])
        return res

    @torch.no_grad()
    def scan(self, texts: str | Sequence[str], batch_size: int = 8, max_length: int = 512) -> list[MonitorResult]:
        """Monitor each text (each is one row, cut to ``max_length`` tokens)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or any(not t for t in texts):
            raise FeatureError("give non-empty texts to monitor")
        name = self.source.hook_names[0]
        out: list[MonitorResult] = []
        pending = iter(texts)
        for tokens in token_batches(self.model, texts, batch_size, max_length, split_long=False):
            _, cache = self.model.run_with_cache(tokens, names=[name])
            feats = self.source(cache[name])[..., self.idx]  # (B, T, F)
            for row in range(feats.shape[0]):
                n = int(tokens.attention_mask[row].sum())
                ids = tokens.input_ids[row, :n].tolist()
                out.append(self._report(next(pending), ids, feats[row, :n]))
        return out

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int = 30, **kwargs: Any) -> tuple[str, MonitorResult]:
        """Generate from ``prompt`` while monitoring every position (prompt and new tokens)."""
        if not isinstance(prompt, str) or not prompt:
            raise FeatureError(f"prompt must be a non-empty string, got {prompt!r}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise FeatureError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        name = self.source.hook_names[0]
        steps: list[Tensor] = []
        ids: list[Tensor] = []

        def record(act: Tensor, hook: Any) -> None:
            steps.append(self.source(act)[0, :, self.idx])  # (T_step, F)

        def grab_ids(module: Any, args: tuple, kwargs_: dict) -> None:
            x = args[0] if args else kwargs_.get("input")
            ids.append(x[0].detach().cpu())

        handle = self.model.embed_module.register_forward_pre_hook(grab_ids, with_kwargs=True)
        try:
            text = self.model.generate(prompt, max_new_tokens, fwd_hooks=[(name, record)], **kwargs)
        finally:
            handle.remove()
        all_ids = torch.cat(ids).tolist()
        acts = torch.cat(steps)  # (T, F)
        return text, self._report(prompt + text, all_ids, acts)
