"""Steering toward a concept, measured: find a concept's feature in the feature database, steer with it over many
prompts, and compare with random features of the same norm and with no steering.

- :func:`concept_forms`: the word forms counted as mentioning a concept (``love`` -> love, loves, loved, ...).
- :func:`find_concept_feature`: the feature whose top examples most often contain the concept at their peak token
  (full-text search of the database, then a count over each candidate's top examples).
- :func:`steering_success`: for each prompt, does the greedy continuation mention the concept, and how much
  next-token probability do the concept's tokens get.
- :func:`evaluate_concept_steering`: all of that for one concept, with ``n_controls`` random live features scaled to
  the same vector norm, as a :class:`ConceptSteering` (JSON-ready).

The numbers are what a claim "feature F steers toward concept C" needs: the success rate with F, with random
directions of the same size, and without steering, on prompts that say nothing about C.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .source import FeatureError
from .steering import SteeringVector, feature_vector, steering_hooks

NEUTRAL_PROMPTS = (
    "I think that", "The best thing about today is", "She told me that", "Yesterday we went to",
    "The most important thing is", "In my opinion,", "He looked at the", "Let me tell you about",
    "The story begins with", "Everyone knows that", "When I woke up,", "The problem with this is",
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


def find_concept_feature(db: Any, word: str, *, candidates: int = 40, min_matches: int = 3
                         ) -> tuple[int, float] | None:
    """``(feature, fraction of its top examples that peak on the concept)`` for the best feature, or None.

    Candidates come from a full-text search of the examples for any form of ``word``; each is scored by the share of
    its top examples whose peak token (or the token just before) is a form of the concept.
    """
    forms = concept_forms(word)
    query = " OR ".join(f'"{f}"' for f in forms if "'" not in f)
    seen: dict[int, None] = {}
    for f, _ in db.search(query, limit=candidates * 4):
        seen.setdefault(f, None)
    best: tuple[int, float] | None = None
    for f in list(seen)[:candidates]:
        examples = db.examples(f, "top")
        if not examples:
            continue
        hits = 0
        for ex in examples:
            near = ex.str_tokens[max(0, ex.position - 1):ex.position + 1]
            hits += any(mentions(t, forms) for t in near)
        if hits >= min_matches and (best is None or hits / len(examples) > best[1]):
            best = (f, hits / len(examples))
    return best


@torch.no_grad()
def steering_success(model: Any, vectors: Sequence[SteeringVector], prompts: Sequence[str], forms: Sequence[str],
                     *, max_new_tokens: int = 16) -> tuple[float, float, list[str]]:
    """``(mention rate, mean next-token probability of the concept's tokens, continuations)`` under ``vectors``."""
    hooks = steering_hooks(vectors)
    texts = model.generate(list(prompts), max_new_tokens=max_new_tokens, fwd_hooks=hooks)
    ids = torch.tensor(concept_token_ids(model.tokenizer, forms))
    probs = []
    with model.hooks(hooks):
        for p in prompts:
            logits = model(p)[0, -1]  # (V,)
            probs.append(float(logits.float().softmax(-1)[ids].sum()))
    rate = sum(mentions(t, forms) for t in texts) / len(texts)
    return rate, sum(probs) / len(probs), list(texts)


@dataclass
class ConceptSteering:
    """One concept steered by one feature, against random features of equal norm and no steering."""

    concept: str
    feature: int
    match_fraction: float
    """Share of the feature's top examples that peak on the concept (how it was found)."""
    strength: float
    """Multiple of the feature's max activation added along its decoder direction."""
    prompts: list[str]
    success: float
    """Fraction of continuations that mention the concept, steering with the feature."""
    control_success: float
    """The same with random live features scaled to the same vector norm (mean over controls)."""
    baseline_success: float
    """The same without steering."""
    concept_prob: float
    """Mean next-token probability of the concept's tokens, steering with the feature."""
    control_prob: float
    baseline_prob: float
    control_features: list[int] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)
    """Per prompt: ``{"prompt", "baseline", "steered"}`` continuations."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_concept_steering(model: Any, dictionary: Any, db: Any, concept: str, feature: int, *,
                              strength: float = 4.0, prompts: Sequence[str] = NEUTRAL_PROMPTS,
                              n_controls: int = 3, max_new_tokens: int = 16, seed: int = 0,
                              match_fraction: float = float("nan")) -> ConceptSteering:
    """Steer ``prompts`` with ``feature`` and with ``n_controls`` random live features of the same norm."""
    if len(prompts) < 1:
        raise FeatureError("give at least one prompt")
    forms = concept_forms(concept)
    card = db.card(feature)
    vec = feature_vector(dictionary, feature, strength, max_activation=card.max_act)
    norm = float(vec.vector.norm())
    live = [f for f, _ in db.by_density(1e-9, 1.0, limit=100_000) if f != feature]
    rng = random.Random(seed)
    controls = rng.sample(live, min(n_controls, len(live)))
    success, prob, texts = steering_success(model, [vec], prompts, forms, max_new_tokens=max_new_tokens)
    base_success, base_prob, base_texts = steering_success(model, [], prompts, forms, max_new_tokens=max_new_tokens)
    c_success, c_prob = [], []
    for c in controls:
        cv = feature_vector(dictionary, c, 1.0, max_activation=db.card(c).max_act)
        cv = SteeringVector(cv.hook_name, cv.vector * (norm / float(cv.vector.norm().clamp_min(1e-12))),
                            f"feature {c} at equal norm")
        s, p, _ = steering_success(model, [cv], prompts, forms, max_new_tokens=max_new_tokens)
        c_success.append(s)
        c_prob.append(p)
    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    return ConceptSteering(concept, feature, match_fraction, strength, list(prompts), success, mean(c_success),
                           base_success, prob, mean(c_prob), base_prob, controls,
                           [{"prompt": p, "baseline": b, "steered": t} for p, b, t in zip(prompts, base_texts, texts)])
