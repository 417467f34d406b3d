"""Steering toward a concept, measured: find a concept's feature in the feature database, steer with it over many
prompts, and compare with random features of the same norm and with no steering.

- :func:`concept_forms`: the word forms counted as mentioning a concept (``love`` -> love, loves, loved, ...).
- :func:`concept_feature_candidates` / :func:`find_concept_feature`: features whose top examples contain the concept
  at their peak token (full-text search of the database, then a count over each candidate's top examples).
- :func:`promoting_features`: features whose logit effects promote the concept's tokens (output features, found
  whether or not the statistics pass saw the word).
- :func:`choose_concept_feature`: of both kinds of candidates, the one whose steering raises the concept's next-token
  probability most (:func:`output_score`) on prompts kept apart from the ones steering is measured on.
- :func:`fluency_bound` / :func:`continuation_scores`: when a continuation still reads as text. It is fluent when
  the *unsteered* model finds it no less likely (mean per-token NLL) than 90% of its own sampled continuations of
  the same prompts, and no more than half its tokens repeat. Steering too hard makes a continuation mention the
  concept by repeating it ("music music music"); that counts as a mention but not as a success.
- :func:`steering_success`: for each prompt, does the greedy continuation mention the concept, is it fluent, and how
  much next-token probability do the concept's tokens get.
- :func:`evaluate_concept_steering`: a sweep over strengths, keeping the weakest one with the most fluent mentions,
  then ``n_controls`` random live features scaled to that vector norm, as a :class:`ConceptSteering` (JSON-ready).

The numbers are what a claim "feature F steers toward concept C" needs: the success rate with F, with random
directions of the same size, and without steering, on prompts that say nothing about C, counting only continuations
that are still fluent text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .source import FeatureError
from .steering import SteeringVector, feature_vector, steering_hooks

NEUTRAL_PROMPTS = (
    "I think that", "The best thing about today is", "She told me that", "Yesterday we went to",
    "The most important thing is", "In my opinion,", "He looked at the", "Let me tell you about",
    "The story begins with", "Everyone knows that", "When I woke up,", "The problem with this is",
    "My favourite thing to do is", "They said it was", "I remember the first time", "There is something about",
    "The old man said", "What I like most is", "On the way home,", "You should know that",
    "It all started when", "The reason is simple:", "Last week I saw", "All of a sudden,",
)
"""Prompts that name no particular concept, for measuring where steering takes a continuation."""


def concept_forms(word: str) -> list[str]:
    """Lower-case forms that count as a mention of ``word``: itself, plural / 3rd person, -ed, -ing."""
    w = word.lower().strip()
    if not w or not w.isalpha():
        raise FeatureError(f"a concept is one alphabetic word, got {word!r}")
    stem = w[:-1] if w.endswith("e") else w
    return sorted({w, w + "s", w + "es", stem + "ed", stem + "ing", w + "'s"})


def mentions(text: str, forms: Sequence[str]) -> bool:
    """True when ``text`` contains one of ``forms`` as a whole word (case-insensitive)."""
    pattern = r"\b(" + "|".join(re.escape(f) for f in forms) + r")\b"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def concept_token_ids(tokenizer: Any, forms: Sequence[str]) -> list[int]:
    """First-token ids of each form, with and without a leading space, lower and capitalised."""
    ids: set[int] = set()
    for f in forms:
        for variant in (f, f.capitalize()):
            for text in (" " + variant, variant):
                toks = tokenizer.encode(text, add_special_tokens=False)
                if toks:
                    ids.add(int(toks[0]))
    return sorted(ids)


def _peak_fraction(db: Any, feature: int, forms: Sequence[str]) -> tuple[int, float]:
    """How many of ``feature``'s top examples peak on a form of the concept (or on the token just after one), and
    what fraction of its top examples that is."""
    examples = db.examples(feature, "top")
    hits = 0
    for ex in examples:
        near = ex.str_tokens[max(0, ex.position - 1):ex.position + 1]
        hits += any(mentions(t, forms) for t in near)
    return hits, hits / len(examples) if examples else 0.0


def concept_feature_candidates(db: Any, word: str, *, candidates: int = 40, min_matches: int = 3
                               ) -> list[tuple[int, float]]:
    """``(feature, fraction of its top examples that peak on the concept)``, best first, for every feature with at
    least ``min_matches`` such examples.

    Candidates come from a full-text search of the examples for any form of ``word``; each is scored by the share of
    its top examples whose peak token (or the token just before) is a form of the concept.
    """
    forms = concept_forms(word)
    query = " OR ".join(f'"{f}"' for f in forms if "'" not in f)
    seen: dict[int, None] = {}
    for f, _ in db.search(query, limit=candidates * 4):
        seen.setdefault(f, None)
    found = []
    for f in list(seen)[:candidates]:
        hits, fraction = _peak_fraction(db, f, forms)
        if hits >= min_matches:
            found.append((f, fraction))
    return sorted(found, key=lambda t: -t[1])  # stable: ties keep search order


def promoting_features(db: Any, word: str, *, limit: int = 40) -> list[int]:
    """Features whose logit effects in the database (their top promoted tokens) include a form of ``word``, largest
    effect first. Unlike :func:`concept_feature_candidates` this does not depend on the statistics pass having seen
    the word: every feature has logit effects."""
    best: dict[int, float] = {}
    for form in concept_forms(word):
        for variant in dict.fromkeys((form, form.capitalize())):
            for f, value in db.by_token(variant, "promoted", limit=limit):
                best[f] = max(best.get(f, value), value)
    return sorted(best, key=lambda f: -best[f])[:limit]


def find_concept_feature(db: Any, word: str, *, candidates: int = 40, min_matches: int = 3
                         ) -> tuple[int, float] | None:
    """The best of :func:`concept_feature_candidates`, or None."""
    found = concept_feature_candidates(db, word, candidates=candidates, min_matches=min_matches)
    return found[0] if found else None


SELECTION_PROMPTS = (
    "It was a long day, and", "We talked for a while about", "This is why I believe", "Here is what happened:",
    "After a few minutes, she", "The next morning, the",
)
"""Neutral prompts used only to choose a feature (:func:`output_score`), never to measure steering with it."""


def _next_log_probs(model: Any, prompts: Sequence[str]) -> Float[Tensor, "prompts vocab"]:
    """Log-probabilities of the next token after each prompt, under the model's current hooks."""
    return torch.stack([model(p)[0, -1].float().log_softmax(-1) for p in prompts])


@torch.no_grad()
def output_score(model: Any, dictionary: Any, feature: int, max_activation: float, forms: Sequence[str], *,
                 strength: float = 4.0, prompts: Sequence[str] = SELECTION_PROMPTS,
                 unsteered: Tensor | None = None) -> float:
    """How much steering with ``feature`` raises the concept's next-token probability: the mean over ``prompts`` of
    ``log p_steered(concept) - log p(concept)`` at ``strength`` x its max activation (one forward pass each;
    ``unsteered``, the unsteered model's next-token log-probabilities on ``prompts``, is computed when not given).

    Features that *fire on* a word are not always the ones that make the model *say* it (Arad et al. 2025, "SAEs
    are good for steering - if you select the right features"); this is the output side of that choice.
    """
    ids = torch.tensor(concept_token_ids(model.tokenizer, forms))
    base = _next_log_probs(model, prompts) if unsteered is None else unsteered
    vec = feature_vector(dictionary, feature, strength, max_activation=max_activation)
    with model.hooks(steering_hooks([vec])):
        steered = _next_log_probs(model, prompts)
    return float((steered[:, ids].logsumexp(-1) - base[:, ids].logsumexp(-1)).mean())


def choose_concept_feature(model: Any, dictionary: Any, db: Any, word: str, *, n_candidates: int = 5,
                           min_matches: int = 3, strength: float = 4.0,
                           prompts: Sequence[str] = SELECTION_PROMPTS) -> tuple[int, float, float] | None:
    """``(feature, match fraction, output score)``: of the ``n_candidates`` features that peak most often on the
    concept and the ``n_candidates`` that promote it most (:func:`promoting_features`), the one whose steering
    raises the concept's probability most on ``prompts`` (which should not be the prompts steering is then measured
    on). The match fraction is the share of its top examples that peak on the concept (0 for a feature found by its
    logit effects alone). None when no feature peaks on the concept or promotes it."""
    forms = concept_forms(word)
    found = dict(concept_feature_candidates(db, word, min_matches=min_matches)[:n_candidates])
    for f in promoting_features(db, word, limit=n_candidates):
        if f not in found and db.card(f).max_act > 0:  # logit effects exist for features that never fired too
            found[f] = _peak_fraction(db, f, forms)[1]
    if not found:
        return None
    with torch.no_grad():
        unsteered = _next_log_probs(model, prompts)
    scored = [(f, m, output_score(model, dictionary, f, db.card(f).max_act, forms, strength=strength,
                                  prompts=prompts, unsteered=unsteered)) for f, m in found.items()]
    return max(scored, key=lambda t: t[2])


MIN_DISTINCT = 0.5
"""A fluent continuation repeats at most half of its tokens (share of distinct token ids >= this)."""
NLL_QUANTILE = 0.9
"""A fluent continuation is as likely, to the unsteered model, as this share of the model's own samples."""
STRENGTHS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
"""Default sweep: multiples of the feature's max activation."""


@dataclass
class FluencyBound:
    """When a continuation counts as fluent text (see the module docstring)."""

    max_nll: float
    """Mean per-token negative log-likelihood (nats) under the unsteered model, at most."""
    min_distinct: float = MIN_DISTINCT
    """Share of distinct token ids in the continuation, at least."""

    def fluent(self, nll: float, distinct: float) -> bool:
        return nll <= self.max_nll and distinct >= self.min_distinct


@torch.no_grad()
def continuation_scores(model: Any, prompts: Sequence[str], continuations: Sequence[str]
                        ) -> list[tuple[float, float]]:
    """Per continuation: ``(mean NLL per token under the model as it is now, share of distinct tokens)``.

    Call it with no steering hooks on, so that the NLL is the unsteered model's. An empty continuation scores
    ``(inf, 0.0)``: nothing was written, which is not fluent.
    """
    if len(prompts) != len(continuations):
        raise FeatureError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    out = []
    for prompt, text in zip(prompts, continuations):
        cont = model.tokenizer.encode(text, add_special_tokens=False)
        if not cont:
            out.append((float("inf"), 0.0))
            continue
        head = model.to_tokens(prompt)[0]  # (P,), with BOS where the model prepends it
        ids = torch.cat([head, torch.tensor(cont, device=head.device)])[None]  # (1, P + C)
        ids = ids[:, -int(model.cfg.n_ctx):]
        logits = model(ids)[0, -len(cont) - 1:-1].float()  # (C, V): the predictions of each continuation token
        nll = torch.nn.functional.cross_entropy(logits, ids[0, -len(cont):], reduction="mean")
        out.append((float(nll), len(set(cont)) / len(cont)))
    return out


@torch.no_grad()
def fluency_bound(model: Any, prompts: Sequence[str], *, max_new_tokens: int = 16, samples: int = 2,
                  seed: int = 0, quantile: float = NLL_QUANTILE, min_distinct: float = MIN_DISTINCT
                  ) -> FluencyBound:
    """The NLL the unsteered model's own sampled continuations (temperature 1) stay under, at ``quantile``."""
    if not 0.0 < quantile <= 1.0:
        raise FeatureError(f"quantile must be in (0, 1], got {quantile}")
    nlls: list[float] = []
    for i in range(samples):
        texts = model.generate(list(prompts), max_new_tokens=max_new_tokens, do_sample=True, seed=seed + i)
        nlls += [n for n, _ in continuation_scores(model, prompts, texts) if n != float("inf")]
    if not nlls:
        raise FeatureError("the unsteered model wrote nothing to measure fluency against")
    return FluencyBound(float(torch.tensor(nlls).quantile(quantile)), min_distinct)


@dataclass
class SteeringOutcome:
    """What one steering vector (or none) does over a set of prompts."""

    mention_rate: float
    """Share of continuations that mention the concept."""
    fluent_rate: float
    """Share of continuations that are fluent (:class:`FluencyBound`)."""
    success: float
    """Share that mention the concept and are fluent."""
    concept_prob: float
    """Mean next-token probability of the concept's tokens after the prompt."""
    texts: list[str]
    said: list[bool] = field(default_factory=list)
    """Per continuation: does it mention the concept."""
    fluent: list[bool] = field(default_factory=list)
    """Per continuation: is it fluent."""


@torch.no_grad()
def steering_success(model: Any, vectors: Sequence[SteeringVector], prompts: Sequence[str], forms: Sequence[str],
                     bound: FluencyBound, *, max_new_tokens: int = 16) -> SteeringOutcome:
    """Mentions, fluency and the concept's next-token probability under ``vectors`` (none: the unsteered model)."""
    hooks = steering_hooks(vectors)
    texts = list(model.generate(list(prompts), max_new_tokens=max_new_tokens, fwd_hooks=hooks))
    ids = torch.tensor(concept_token_ids(model.tokenizer, forms))
    probs = []
    with model.hooks(hooks):
        for p in prompts:
            logits = model(p)[0, -1]  # (V,)
            probs.append(float(logits.float().softmax(-1)[ids].sum()))
    said = [mentions(t, forms) for t in texts]
    fluent = [bound.fluent(n, d) for n, d in continuation_scores(model, prompts, texts)]  # unsteered: hooks are off
    n = len(texts)
    return SteeringOutcome(sum(said) / n, sum(fluent) / n, sum(s and f for s, f in zip(said, fluent)) / n,
                           sum(probs) / len(probs), texts, said, fluent)


@dataclass
class ConceptSteering:
    """One concept steered by one feature, against random features of equal norm and no steering.

    Success rates count continuations that mention the concept *and* are fluent; ``*_mentions`` count mentions of
    any kind. ``strength`` is the weakest in ``sweep`` with the highest success.
    """

    concept: str
    feature: int
    match_fraction: float
    """Share of the feature's top examples that peak on the concept (how it was found)."""
    strength: float
    """Multiple of the feature's max activation added along its decoder direction."""
    prompts: list[str]
    success: float
    """Fraction of continuations that mention the concept and are fluent, steering with the feature."""
    control_success: float
    """The same with random live features scaled to the same vector norm (mean over controls)."""
    baseline_success: float
    """The same without steering."""
    concept_prob: float
    """Mean next-token probability of the concept's tokens, steering with the feature."""
    control_prob: float
    baseline_prob: float
    mentions: float = float("nan")
    """Fraction of continuations that mention the concept, fluent or not, steering with the feature."""
    control_mentions: float = float("nan")
    baseline_mentions: float = float("nan")
    fluent: float = float("nan")
    """Fraction of the steered continuations that are fluent."""
    max_nll: float = float("nan")
    """The fluency bound used (nats per token under the unsteered model)."""
    sweep: list[dict[str, float]] = field(default_factory=list)
    """Per strength tried: ``{"strength", "success", "mentions", "fluent", "concept_prob"}``."""
    control_features: list[int] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)
    """Per prompt: ``{"prompt", "baseline", "steered", "verdict"}``: the continuations and whether the steered one
    mentions the concept and is fluent."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def sweep_view(self, title: str = "strength sweep") -> Any:
        """Line plot over the strengths tried: fluent mentions, mentions of any kind, fluent continuations."""
        from .. import display

        return display.line_plot({"fluent mentions": [x["success"] for x in self.sweep],
                                  "mentions (any)": [x["mentions"] for x in self.sweep],
                                  "fluent continuations": [x["fluent"] for x in self.sweep]},
                                 [f"×{x['strength']:g}" for x in self.sweep], title=title,
                                 y_label="share of prompts")

    def view(self) -> Any:
        """Interactive view (:mod:`mechscope.display`): the strength sweep, the comparison with the controls and the
        continuations with and without steering."""
        from .. import display

        title = f"steering toward '{self.concept}' with feature {self.feature}"
        if not self.prompts:
            return display.empty(title, "no prompts were steered")
        children = [self.sweep_view()] if self.sweep else []
        children.append(display.table(
            ["", "fluent mentions", "mentions (any)", "p(concept)"],
            [["feature", self.success, self.mentions, self.concept_prob],
             ["random features, equal norm", self.control_success, self.control_mentions, self.control_prob],
             ["no steering", self.baseline_success, self.baseline_mentions, self.baseline_prob]],
            title=f"at x{self.strength:g}"))
        if self.examples:
            children.append(display.table(["prompt", "without steering", "steered", "steered: verdict"],
                                          [[e["prompt"], e["baseline"], e["steered"], e.get("verdict", "")]
                                           for e in self.examples], title="continuations"))
        summary: list[tuple[str, Any]] = [("strength", f"x{self.strength:g}"),
                                          ("fluent mentions", f"{self.success:.0%} of {len(self.prompts)}"),
                                          ("random features", f"{self.control_success:.0%}"),
                                          ("no steering", f"{self.baseline_success:.0%}")]
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


def evaluate_concept_steering(model: Any, dictionary: Any, db: Any, concept: str, feature: int, *,
                              strengths: Sequence[float] = STRENGTHS, prompts: Sequence[str] = NEUTRAL_PROMPTS,
                              n_controls: int = 3, max_new_tokens: int = 16, seed: int = 0,
                              match_fraction: float = float("nan"), bound: FluencyBound | None = None
                              ) -> ConceptSteering:
    """Steer ``prompts`` with ``feature`` at each of ``strengths``; keep the weakest with the most fluent mentions
    and compare it with ``n_controls`` random live features of the same norm and with no steering.

    ``bound`` defaults to :func:`fluency_bound` on the same prompts (pass one to share it between concepts).
    """
    if len(prompts) < 1:
        raise FeatureError("give at least one prompt")
    if not strengths or any(not (s > 0 and s < float("inf")) for s in strengths):
        raise FeatureError(f"strengths must be positive and finite, got {list(strengths)}")
    forms = concept_forms(concept)
    if bound is None:
        bound = fluency_bound(model, prompts, max_new_tokens=max_new_tokens, seed=seed)
    card = db.card(feature)
    tried = []
    for strength in sorted(strengths):
        vec = feature_vector(dictionary, feature, strength, max_activation=card.max_act)
        tried.append((strength, vec, steering_success(model, [vec], prompts, forms, bound,
                                                      max_new_tokens=max_new_tokens)))
    strength, vec, best = max(tried, key=lambda t: (t[2].success, -t[0]))
    norm = float(vec.vector.norm())
    live = [f for f, _ in db.by_density(1e-9, 1.0, limit=100_000) if f != feature]
    rng = random.Random(seed)
    controls = rng.sample(live, min(n_controls, len(live)))
    base = steering_success(model, [], prompts, forms, bound, max_new_tokens=max_new_tokens)
    ctrl = []
    for c in controls:
        cv = feature_vector(dictionary, c, 1.0, max_activation=db.card(c).max_act)
        cv = SteeringVector(cv.hook_name, cv.vector * (norm / float(cv.vector.norm().clamp_min(1e-12))),
                            f"feature {c} at equal norm")
        ctrl.append(steering_success(model, [cv], prompts, forms, bound, max_new_tokens=max_new_tokens))

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    return ConceptSteering(
        concept, feature, match_fraction, strength, list(prompts), best.success, mean([c.success for c in ctrl]),
        base.success, best.concept_prob, mean([c.concept_prob for c in ctrl]), base.concept_prob,
        mentions=best.mention_rate, control_mentions=mean([c.mention_rate for c in ctrl]),
        baseline_mentions=base.mention_rate, fluent=best.fluent_rate, max_nll=bound.max_nll,
        sweep=[{"strength": s, "success": o.success, "mentions": o.mention_rate, "fluent": o.fluent_rate,
                "concept_prob": o.concept_prob} for s, _, o in tried],
        control_features=controls,
        examples=[{"prompt": p, "baseline": b, "steered": t,
                   "verdict": ("fluent mention" if m and f else "mention, not fluent" if m else
                               "fluent, no mention" if f else "neither")}
                  for p, b, t, m, f in zip(prompts, base.texts, best.texts, best.said, best.fluent)])
