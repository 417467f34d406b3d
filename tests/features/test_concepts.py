"""Concept steering: word forms, finding a concept's feature in a database, and success measured against controls."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import mechscope as ms
from mechscope.features.concepts import (concept_forms, evaluate_concept_steering, find_concept_feature,
                                         mentions)
from mechscope.features.source import FeatureError
from mechscope.features.stats import Example


def test_forms_and_mentions():
    assert concept_forms("love") == sorted({"love", "loves", "lovees", "loved", "loving", "love's"})
    assert mentions("I loved it.", concept_forms("love"))
    assert not mentions("a glove", concept_forms("love"))  # whole words only
    with pytest.raises(FeatureError, match="alphabetic"):
        concept_forms("two words")


def _example(feature: int, words: list[str], peak: int) -> Example:
    return Example(feature, 1.0, list(range(len(words))), [0.0] * len(words), peak, 0, words)


class FakeDB:
    """search / examples as FeatureDB answers them."""

    def __init__(self, examples: dict[int, list[Example]]):
        self.ex = examples

    def search(self, query: str, limit: int = 20):
        return [(f, "") for f, exs in self.ex.items() if any("music" in e.text() for e in exs)][:limit]

    def examples(self, feature: int, kind: str = "top"):
        return self.ex[feature]


def test_find_concept_feature_prefers_features_peaking_on_the_concept():
    db = FakeDB({
        1: [_example(1, ["the", " music", " was"], 0)] * 5,       # mentions music, but peaks elsewhere
        2: [_example(2, ["loud", " music", " played"], 1)] * 4 + [_example(2, ["a", " b"], 0)] * 6,
        3: [_example(3, ["my", " musical", " taste"], 1)] * 5,     # another word
        4: [_example(4, ["the", " music"], 1)] * 9 + [_example(4, ["x", " music"], 0)],
    })
    assert find_concept_feature(db, "music") == (4, 0.9)  # the peak or the token before it: 9 of 10
    assert find_concept_feature(FakeDB({}), "music") is None


@pytest.mark.real
def test_steering_toward_an_unembedding_direction_beats_equal_norm_controls(smollm):
    """A feature whose decoder direction is ' love' in the unembedding, added at norm 300 to the last residual
    (whose norm is several hundred), makes the continuations say love; random features at the same norm do not."""
    model = smollm
    layer = model.cfg.n_layers - 1
    d = ms.dictionaries.create("topk", d_in=model.cfg.d_model, d_sae=16, k=1,
                               hook_name=f"blocks.{layer}.resid_post", model_name="smollm2-135m")
    love = model.W_U[:, model.to_single_token(" love")].detach().float()
    with torch.no_grad():
        d.W_dec[0] = love / love.norm()
    card = SimpleNamespace(max_act=1.0)
    db = SimpleNamespace(card=lambda f: card, by_density=lambda *a, **k: [(f, 0.01) for f in range(16)])
    res = evaluate_concept_steering(model, d, db, "love", 0, strength=300.0, n_controls=3, max_new_tokens=8)
    assert res.success >= 0.75 and res.baseline_success <= 0.25 and res.control_success <= 0.25
    assert res.concept_prob > 10 * max(res.control_prob, res.baseline_prob)
    assert len(res.examples) == len(res.prompts) and res.control_features and 0 not in res.control_features
