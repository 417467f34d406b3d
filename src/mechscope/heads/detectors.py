"""Attention-head detectors: previous-token, induction, duplicate-token and attention-sink scores per head.

All scores come from attention patterns on repeated random token sequences ``[prefix] r_1..r_n r_1..r_n``:

- previous-token: attention from position ``i`` to ``i - 1`` (every query after the first token);
- induction: from ``r_j`` in the second copy to the token *after* its first occurrence (``i - n + 1``);
- duplicate-token: from ``r_j`` in the second copy to its first occurrence (``i - n``);
- attention sink: to the first position (the BOS token when there is one), over every query after it.

    >>> scores = head_scores(model)
    >>> scores.table("induction").plot("induction.png")   # layers × heads
    >>> scores.classify()["L4H3"]                          # 'induction'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from ..data.prompts import InductionData, induction_tokens
from ..interventions.results import PatchResult
from ..models.hooked import HookedModel

KINDS = ("previous_token", "induction", "duplicate_token", "attention_sink")
DEFAULT_THRESHOLDS = {"previous_token": 0.4, "induction": 0.4, "duplicate_token": 0.4, "attention_sink": 0.7}


def diagonal_score(pattern: Float[Tensor, "batch heads q k"], offset: int, queries: Sequence[int] | range
                   ) -> Float[Tensor, " heads"]:
    """Mean attention from each query ``i`` in ``queries`` to key ``i - offset``, per head."""
    q = torch.as_tensor(list(queries))
    k = q - offset
    if (k < 0).any():
        raise ValueError(f"offset {offset} reaches before the sequence for some queries")
    return pattern[:, :, q, k].float().mean((0, 2))  # (H,)


def pairs_score(pattern: Float[Tensor, "batch heads q k"], rows: Tensor, queries: Tensor, keys: Tensor
                ) -> Float[Tensor, " heads"]:
    """Mean attention over ``(rows[i], queries[i] -> keys[i])`` triples, per head: :func:`diagonal_score` for data
    whose offsets differ from sequence to sequence (the induction toy's random segment lengths)."""
    return pattern[rows, :, queries, keys].float().mean(0)  # (H,)


def column_score(pattern: Float[Tensor, "batch heads q k"], key: int, queries: Sequence[int] | range
                 ) -> Float[Tensor, " heads"]:
    """Mean attention from ``queries`` to one key position, per head."""
    return pattern[:, :, list(queries), key].float().mean((0, 2))


def scores_from_pattern(pattern: Float[Tensor, "batch heads q k"], data: InductionData) -> dict[str, Tensor]:
    """Every detector's score per head from one layer's pattern on :class:`InductionData`."""
    n, p = data.seq_len, data.prefix
    second = range(p + n, p + 2 * n)  # queries in the second copy
    return {
        "previous_token": diagonal_score(pattern, 1, range(p + 1, p + 2 * n)),
        "induction": diagonal_score(pattern, n - 1, second),
        "duplicate_token": diagonal_score(pattern, n, second),
        "attention_sink": column_score(pattern, 0, range(1, p + 2 * n)),
    }


@dataclass
class HeadScores:
    """``scores[kind]`` is a layers × heads tensor for each kind in :data:`KINDS`."""

    scores: dict[str, Tensor]
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    def table(self, kind: str) -> PatchResult:
        """One detector's scores as a labelled layers × heads result (with ``.plot()``)."""
        if kind not in self.scores:
            raise KeyError(f"unknown head score {kind!r}; valid: {', '.join(self.scores)}")
        s = self.scores[kind]
        return PatchResult(s, [f"L{layer}" for layer in range(s.shape[0])], [f"H{h}" for h in range(s.shape[1])],
                           kind, title=f"{kind} score")

    def top(self, kind: str, k: int = 5) -> list[tuple[str, float]]:
        s = self.scores[kind]
        vals, idx = s.flatten().topk(min(k, s.numel()))
        return [(f"L{int(i) // s.shape[1]}H{int(i) % s.shape[1]}", float(v)) for v, i in zip(vals, idx)]

    def classify(self) -> dict[str, str]:
        """Each head's class: the kind whose score most exceeds its threshold, else ``"other"``.

        The attention sink is only chosen when no other kind passes (most heads park attention on the first token).
        """
        first = next(iter(self.scores.values()))
        out = {}
        for layer in range(first.shape[0]):
            for h in range(first.shape[1]):
                margins = {k: float(self.scores[k][layer, h]) - self.thresholds[k] for k in self.scores}
                specific = {k: m for k, m in margins.items() if k != "attention_sink" and m >= 0}
                if specific:
                    out[f"L{layer}H{h}"] = max(specific, key=specific.get)
                elif margins.get("attention_sink", -1.0) >= 0:
                    out[f"L{layer}H{h}"] = "attention_sink"
                else:
                    out[f"L{layer}H{h}"] = "other"
        return out

    def to_markdown(self, min_score: float = 0.0) -> str:
        """One row per head with every score and its class (heads whose best score is below ``min_score`` left out)."""
        cls = self.classify()
        kinds = list(self.scores)
        rows = ["| head | " + " | ".join(kinds) + " | class |", "|---" * (len(kinds) + 2) + "|"]
        for name, c in cls.items():
            layer, h = (int(x) for x in name[1:].split("H"))
            vals = [float(self.scores[k][layer, h]) for k in kinds]
            if max(vals) >= min_score:
                rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {c} |")
        return "\n".join(rows)

    def view(self, top: int = 10):
        """Interactive views (:mod:`mechscope.display`): one layers × heads heatmap per detector and a table of the
        strongest heads with their class."""
        from .. import display

        title = "attention-head scores"
        if not self.scores or next(iter(self.scores.values())).numel() == 0:
            return display.empty(title, "no heads were scored")
        maps = [display.heatmap(s, [f"L{i}" for i in range(s.shape[0])], [f"H{h}" for h in range(s.shape[1])],
                                title=f"{kind} score", value_name=f"{kind} score", diverging=False)
                for kind, s in self.scores.items()]
        cls = self.classify()
        rows = [[kind, head, value, cls[head]] for kind in self.scores for head, value in self.top(kind, 3)]
        best = display.table(["detector", "head", "score", "class"], rows, title="top heads per detector")
        summary = [(f"top {kind} head", f"{h} ({v:.3f})") for kind in self.scores for h, v in self.top(kind, 1)]
        return display.panel(title, [best, *maps][: top + 1], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def head_scores(model: HookedModel, data: InductionData | None = None, *, n: int = 4, seq_len: int = 20,
                seed: int = 0, layers: Sequence[int] | None = None) -> HeadScores:
    """Every detector's score for every head, from attention patterns on repeated random tokens."""
    data = data or induction_tokens(model, n, seq_len, seed=seed)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = [f"blocks.{layer}.attn.pattern" for layer in layers]
    with torch.no_grad():
        _, cache = model.run_with_cache(data.tokens, names=names)
    per_layer = [scores_from_pattern(cache[name], data) for name in names]
    return HeadScores({k: torch.stack([s[k] for s in per_layer]) for k in KINDS})
