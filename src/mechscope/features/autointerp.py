"""Autointerp: explain a feature from its examples with an LLM, then score the explanation on held-out examples.

- :func:`explain`: the top examples, activating tokens marked ``<<like this>>``, plus the most frequent peak tokens,
  go to the LLM, which answers with a one-sentence explanation.
- :func:`detection_score`: for held-out activating examples and non-activating ones, the LLM is asked whether the
  text contains what the explanation describes; ``P(yes)`` from the first token's log-probabilities.
- :func:`fuzzing_score`: held-out activating examples shown twice, once with the truly active tokens marked and
  once with as many random inactive tokens marked; the LLM is asked whether the marked tokens match.

Each scorer reports precision and recall separately (prediction: ``P(yes) > threshold``), accuracy, and the
threshold-free AUROC of ``P(yes)``.

Nothing unusable is scored as if it were real. An explainer reply with no usable sentence (empty, punctuation, a
refusal) gives ``explanation=None`` and ``status="no_explanation"``, never a template; a scorer reply that is
neither yes nor no is left out of the metrics (counted in ``n_unparsed``), never taken as ``P(yes) = 0.5``, and
:attr:`Interpretation.status` says so (``"partly_unscored"``, or ``"unscored"`` when nothing could be scored).
Held-out means: examples not shown when explaining (top examples after the first ``n_explain``, and the uniformly
sampled ones). Negatives are other features' top examples from sequences
where this feature was not among the recorded examples (so, as far as the statistics know, inactive).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, cast

from ..validation import check_finite_fields
from .llm import LLMClient, Message
from .source import FeatureError
from .stats import Example


class ExampleStats(Protocol):
    """Examples straight from the statistics (:class:`~mechscope.features.stats.FeatureStats`)."""

    @property
    def d_sae(self) -> int: ...
    def top_examples(self, feature: int) -> list[Example]: ...
    def sampled_examples(self, feature: int) -> list[Example]: ...


class _Card(Protocol):
    @property
    def top_examples(self) -> list[Example]: ...
    @property
    def quantile_examples(self) -> list[list[Example]]: ...


class ExampleCards(Protocol):
    """Examples from feature cards (:class:`~mechscope.features.db.FeatureDB`)."""

    @property
    def d_sae(self) -> int: ...
    def card(self, feature: int) -> _Card: ...


ExampleSource: TypeAlias = ExampleStats | ExampleCards
"""Where autointerp reads a feature's examples: statistics or a feature database."""

SYSTEM = "You are an expert at explaining what a neuron in a language model responds to. Answer briefly."


@dataclass
class AutointerpConfig:
    """How explanations are made and scored."""

    n_explain: int = 6
    """Top examples shown to the explainer."""
    n_score: int = 4
    """Held-out activating examples per scorer."""
    n_negative: int = 4
    """Non-activating examples for detection."""
    window: int = 20
    """Tokens of context shown around an example's peak."""
    threshold: float = 0.5
    """An example is predicted active when P(yes) exceeds this."""
    max_tokens: int = 48
    """Length limit of the explanation."""
    seed: int = 0
    """Seed of the fuzzing's random marks and the choice of negatives."""

    def __post_init__(self) -> None:
        check_finite_fields(self)
        for name in ("n_explain", "n_score", "n_negative", "window", "max_tokens"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < 1:
                raise FeatureError(f"AutointerpConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= self.threshold <= 1:
            raise FeatureError(f"AutointerpConfig.threshold must be a probability in [0, 1], got {self.threshold!r}")


@dataclass
class ScorerResult:
    """One scorer's verdicts: labels (True: activating / correctly marked) and P(yes) per example.

    ``p_yes`` is None where the model's reply was neither yes nor no: those examples are left out of every metric
    (``n_unparsed`` counts them). A metric with nothing to measure is NaN (no predicted positives for precision, no
    positives for recall, no scored example for accuracy), never a made-up 0.
    """

    name: str
    labels: list[bool]
    p_yes: list[float | None]
    threshold: float = 0.5

    def _scored(self) -> list[tuple[float, bool]]:
        return [(p, y) for p, y in zip(self.p_yes, self.labels) if p is not None]

    @property
    def n_unparsed(self) -> int:
        return sum(p is None for p in self.p_yes)

    @property
    def predictions(self) -> list[bool | None]:
        return [None if p is None else p > self.threshold for p in self.p_yes]

    @property
    def precision(self) -> float:
        pairs = [(p > self.threshold, y) for p, y in self._scored()]
        predicted = sum(pred for pred, _ in pairs)
        return sum(pred and y for pred, y in pairs) / predicted if predicted else float("nan")

    @property
    def recall(self) -> float:
        pairs = [(p > self.threshold, y) for p, y in self._scored()]
        positives = sum(y for _, y in pairs)
        return sum(pred and y for pred, y in pairs) / positives if positives else float("nan")

    @property
    def accuracy(self) -> float:
        pairs = self._scored()
        return sum((p > self.threshold) == y for p, y in pairs) / len(pairs) if pairs else float("nan")

    @property
    def auroc(self) -> float:
        """P(a random positive gets a higher P(yes) than a random negative); ties count half."""
        pos = [p for p, y in self._scored() if y]
        neg = [p for p, y in self._scored() if not y]
        if not pos or not neg:
            return float("nan")
        wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
        return wins / (len(pos) * len(neg))

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "accuracy": self.accuracy, "auroc": self.auroc,
                "n": len(self._scored()), "n_unparsed": self.n_unparsed}

    def view(self):
        """Interactive view (:mod:`mechscope.display`): the metrics, and P(yes) per example (bars, hover for the
        value; a label says whether the example really activates)."""
        from .. import display

        title = f"{self.name} scorer"
        if not self.labels:
            return display.empty(title, "no example was scored")
        labels = [f"#{i} {'active' if y else 'not active'}" for i, y in enumerate(self.labels)]
        return display.panel(title, [display.bar_chart(labels, self.p_yes, value_name="P(yes)",
                                                       title="P(yes) per example (blank: reply not parsed)")],
                             summary=list(self.as_dict().items()))

    def _repr_html_(self) -> str:
        return self.view().html()


#: :attr:`Interpretation.status` values.
STATUSES = ("ok", "no_explanation", "partly_unscored", "unscored")


@dataclass
class Interpretation:
    """An explanation and its scores, with how far they can be trusted (``status``)."""

    feature: int
    explanation: str | None
    """The model's explanation; None when its reply held no usable explanation (nothing is made up)."""
    detection: ScorerResult | None = None
    fuzzing: ScorerResult | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    status: str = "ok"
    """``ok``; ``no_explanation`` (nothing was scored); ``partly_unscored`` (some score replies were neither yes nor
    no and were left out); ``unscored`` (no example could be scored: no held-out examples or no usable reply)."""
    raw_reply: str | None = None
    """The explainer's reply when it was not usable (for inspection; never stored as an explanation)."""

    def view(self):
        """Interactive view (:mod:`mechscope.display`): the explanation, its status, and each scorer's view."""
        from .. import display

        summary: list[tuple[str, object]] = [("explanation", self.explanation or "– (none usable)"),
                                             ("status", self.status)]
        for name, metrics in self.scores.items():
            summary += [(f"{name} {k}", v) for k, v in metrics.items() if k in ("accuracy", "auroc")]
        children = [r.view() for r in (self.detection, self.fuzzing) if r is not None]
        if self.raw_reply is not None:
            children.append(display.text(self.raw_reply, title="explainer's reply (not usable)"))
        if not children:
            children = [display.empty("scores", "nothing was scored" if self.explanation else
                                      "no explanation, so nothing was scored")]
        return display.panel(f"feature {self.feature}: interpretation", children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def _crop(ex: Example, window: int) -> tuple[list[str], list[float]]:
    strs = ex.str_tokens or [str(t) for t in ex.tokens]
    lo = max(0, ex.position - window + 4)
    return strs[lo:lo + window], ex.acts[lo:lo + window]


def format_example(ex: Example, window: int = 20, marks: Sequence[bool] | None = None) -> str:
    """The example's text with marked tokens as ``<<token>>`` (default marks: activation > 0)."""
    strs, acts = _crop(ex, window)
    marks = [a > 0 for a in acts] if marks is None else marks
    return "".join(f"<<{s}>>" if m else s for s, m in zip(strs, marks)).replace("\n", " ").strip()


def _ask(question: str) -> list[Message]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


_REFUSAL = re.compile(r"^(i('m| am)? (sorry|not sure|unsure|cannot|can't|can not|don't know|do not know|am unable)|"
                      r"as an ai|unknown\b|n/?a\b|none\b|no idea\b)", re.IGNORECASE)


def usable_explanation(text: str | None) -> str | None:
    """The first line of an explainer reply when it is an explanation; None for an empty reply, one without words,
    or a refusal ("I'm not sure", "unknown" ...)."""
    first = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
    core = first.strip(" \t\"'`*_-:.")
    if sum(c.isalpha() for c in core) < 3 or _REFUSAL.match(core):
        return None
    return first


def explain(client: LLMClient, examples: Sequence[Example], config: AutointerpConfig | None = None) -> str | None:
    """One-sentence explanation of the feature behind ``examples`` (its top examples); None when the model's reply
    holds no usable explanation (see :func:`usable_explanation`): no template is put in its place."""
    return _explain(client, examples, config)[0]


def _explain(client: LLMClient, examples: Sequence[Example], config: AutointerpConfig | None = None
             ) -> tuple[str | None, str]:
    """``(explanation or None, raw reply)``."""
    cfg = config or AutointerpConfig()
    if not examples:
        raise FeatureError("cannot explain a feature without activating examples (is it dead?)")
    shown = examples[:cfg.n_explain]
    lines = [f"{i + 1}. {format_example(ex, cfg.window)}" for i, ex in enumerate(shown)]
    peaks = Counter((ex.str_tokens or [str(t) for t in ex.tokens])[ex.position].strip() for ex in shown)
    common = ", ".join(repr(t) for t, _ in peaks.most_common(5) if t) or "whitespace"
    question = ("Here are text snippets. The tokens where the neuron is active are marked like <<this>>.\n\n"
                + "\n".join(lines) + f"\n\nThe most active tokens: {common}.\n"
                "In one short sentence, what does the neuron respond to?")
    text = client.chat(_ask(question), max_tokens=cfg.max_tokens).strip()
    return usable_explanation(text), text


def detection_score(client: LLMClient, explanation: str, positives: Sequence[Example],
                    negatives: Sequence[Example], config: AutointerpConfig | None = None) -> ScorerResult:
    cfg = config or AutointerpConfig()
    labels, p = [], []
    for ex, label in [(e, True) for e in positives] + [(e, False) for e in negatives]:
        text = format_example(ex, cfg.window, marks=[False] * cfg.window)
        q = (f"A neuron responds to: {explanation}\n\nText: {text}\n\n"
             "Does this text contain what the neuron responds to? Answer Yes or No.")
        labels.append(label)
        p.append(client.yes_probability(_ask(q)))
    return ScorerResult("detection", labels, p, cfg.threshold)


def fuzzing_score(client: LLMClient, explanation: str, positives: Sequence[Example],
                  config: AutointerpConfig | None = None) -> ScorerResult:
    cfg = config or AutointerpConfig()
    rng = random.Random(cfg.seed)
    labels, p = [], []
    for ex in positives:
        _, acts = _crop(ex, cfg.window)
        true = [a > 0 for a in acts]
        off = [i for i, m in enumerate(true) if not m]
        fake = [False] * len(true)
        for i in rng.sample(off, min(len(off), max(1, sum(true)))):
            fake[i] = True
        for marks, label in ((true, True), (fake, False)):
            q = (f"A neuron responds to: {explanation}\n\nIn this text some tokens are marked like <<this>>:\n"
                 f"{format_example(ex, cfg.window, marks)}\n\n"
                 "Are the marked tokens what the neuron responds to? Answer Yes or No.")
            labels.append(label)
            p.append(client.yes_probability(_ask(q)))
    return ScorerResult("fuzzing", labels, p, cfg.threshold)


def _examples(source: ExampleSource, feature: int) -> tuple[list[Example], list[Example]]:
    """(top, sampled) examples of ``feature`` from :class:`FeatureStats` or :class:`FeatureDB`."""
    if hasattr(source, "sampled_examples"):
        stats = cast(ExampleStats, source)
        return stats.top_examples(feature), stats.sampled_examples(feature)
    card = source.card(feature)
    return card.top_examples, [e for group in card.quantile_examples for e in group]


def held_out(source: ExampleSource, feature: int, config: AutointerpConfig, others: Sequence[int]
             ) -> tuple[list[Example], list[Example], list[Example]]:
    """``(explain_on, positives, negatives)`` for ``feature``; negatives come from the ``others`` features."""
    top, sampled = _examples(source, feature)
    if not top:
        raise FeatureError(f"feature {feature} has no activating examples: nothing to explain")
    shown = top[:config.n_explain]
    used = {e.sequence for e in shown}
    pos = [e for e in top[config.n_explain:] + sampled if e.sequence not in used]
    seen, positives = set(used), []
    for e in pos:
        if e.sequence not in seen:
            seen.add(e.sequence)
            positives.append(e)
    own = {e.sequence for e in top + sampled}
    negatives: list[Example] = []
    for other in others:
        for e in _examples(source, other)[0]:
            if e.sequence not in own and e.sequence not in {n.sequence for n in negatives}:
                negatives.append(e)
                break
        if len(negatives) >= config.n_negative:
            break
    return shown, positives[:config.n_score], negatives


def interpret(client: LLMClient, source: ExampleSource, feature: int, config: AutointerpConfig | None = None,
              explanation: str | None = None, negatives_from: Sequence[int] | None = None) -> Interpretation:
    """Explain ``feature`` (unless ``explanation`` is given) and score it with both scorers.

    ``negatives_from``: features whose top examples provide non-activating texts (default: a seeded random
    sample of the other live features).
    """
    cfg = config or AutointerpConfig()
    d_sae = source.d_sae
    if not 0 <= int(feature) < d_sae:
        raise FeatureError(f"feature {feature} is out of range 0..{d_sae - 1}")
    if negatives_from is None:
        rng = random.Random(cfg.seed + int(feature))
        negatives_from = rng.sample([f for f in range(d_sae) if f != feature], min(d_sae - 1, 8 * cfg.n_negative))
    shown, positives, negatives = held_out(source, feature, cfg, negatives_from)
    raw = None
    if explanation is not None:
        text = usable_explanation(explanation)
        if text is None:
            raise FeatureError(f"explanation {explanation!r} holds no words to score")
    else:
        text, raw = _explain(client, shown, cfg)
    if text is None:  # nothing usable to score: say so, score nothing
        return Interpretation(int(feature), None, status="no_explanation", raw_reply=raw)
    det = detection_score(client, text, positives, negatives, cfg) if positives and negatives else None
    fuz = fuzzing_score(client, text, positives, cfg) if positives else None
    results = [r for r in (det, fuz) if r is not None]
    scored = sum(len(r.p_yes) - r.n_unparsed for r in results)
    unparsed = sum(r.n_unparsed for r in results)
    scores = {r.name: r.as_dict() for r in results if len(r.p_yes) > r.n_unparsed}
    status = "unscored" if scored == 0 else "partly_unscored" if unparsed else "ok"
    return Interpretation(int(feature), text, det, fuz, scores, status=status)
