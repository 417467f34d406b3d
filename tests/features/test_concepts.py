"""Concept steering: word forms, finding a concept's feature in a database, and success measured against controls."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
from display.helpers import check_self_contained

import mechscope as ms
from mechscope.features.concepts import (
    choose_concept_feature,
    concept_forms,
    evaluate_concept_steering,
    find_concept_feature,
    mentions,
    promoting_features,
)
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

    def by_token(self, token: str, where: str = "promoted", limit: int = 20):
        return []  # no logit effects recorded

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


class PromotingDB:
    """by_token / search / examples / card as FeatureDB answers them, with logit effects but no matching examples."""

    def __init__(self, promoted: dict[str, list[tuple[int, float]]]):
        self.promoted = promoted

    def by_token(self, token: str, where: str = "promoted", limit: int = 20):
        assert where == "promoted"
        return self.promoted.get(token, [])[:limit]

    def search(self, query: str, limit: int = 20):
        return []

    def examples(self, feature: int, kind: str = "top"):
        return [_example(feature, ["the", " cat"], 1)] * 4

    def card(self, feature: int):
        return SimpleNamespace(max_act=1.0)


def test_promoting_features_merge_forms_and_capitalisation():
    db = PromotingDB({"love": [(3, 2.0), (5, 1.0)], "Love": [(5, 4.0)], "loved": [(7, 0.5)], "glove": [(9, 9.0)]})
    assert promoting_features(db, "love") == [5, 3, 7]  # each feature at its largest effect; whole forms only
    assert promoting_features(db, "love", limit=2) == [5, 3]
    assert promoting_features(db, "music") == []


def love_dictionary(model, feature: int):
    """A 16-feature TopK dictionary at the last residual whose ``feature`` decodes to the ' love' unembedding."""
    layer = model.cfg.n_layers - 1
    d = ms.dictionaries.create("topk", d_in=model.cfg.d_model, d_sae=16, k=1,
                               hook_name=f"blocks.{layer}.resid_post", model_name="smollm2-135m")
    love = model.W_U[:, model.to_single_token(" love")].detach().float()
    with torch.no_grad():
        d.W_dec[feature] = love / love.norm()
    return d


@pytest.mark.real
def test_choose_concept_feature_finds_an_output_feature_the_examples_never_show(smollm):
    """No top example mentions the concept (a short statistics pass), but the database's logit effects name two
    features promoting it: the one whose direction is the word's unembedding is chosen by its output score."""
    model = smollm
    d = love_dictionary(model, 2)
    db = PromotingDB({"love": [(9, 3.0), (2, 1.0)]})
    feature, match, score = choose_concept_feature(model, d, db, "love", strength=25.0)
    assert (feature, match) == (2, 0.0) and score > 1.0
    assert choose_concept_feature(model, d, PromotingDB({}), "love") is None


@pytest.mark.real
def test_steering_toward_an_unembedding_direction_beats_equal_norm_controls(smollm):
    """A feature whose decoder direction is ' love' in the unembedding, added to the last residual (norm several
    hundred): at a moderate strength the continuations say love and stay text; at the strongest they only repeat it,
    which the sweep counts as mentions but not successes; random features at the kept norm do nothing."""
    model = smollm
    d = love_dictionary(model, 0)
    card = SimpleNamespace(max_act=1.0)
    db = SimpleNamespace(card=lambda f: card, by_density=lambda *a, **k: [(f, 0.01) for f in range(16)])
    res = evaluate_concept_steering(model, d, db, "love", 0, strengths=(300.0, 25.0, 50.0), n_controls=3,
                                    max_new_tokens=8)
    assert [x["strength"] for x in res.sweep] == [25.0, 50.0, 300.0]
    strongest = res.sweep[-1]
    assert strongest["mentions"] == 1.0 and strongest["success"] <= 0.25  # "love love love ...": said, not fluent
    assert res.strength < 300.0 and res.success >= 0.5 and res.success == max(x["success"] for x in res.sweep)
    assert res.baseline_success <= 0.25 and res.control_success <= 0.25 and res.mentions >= res.success
    assert res.concept_prob > 10 * max(res.control_prob, res.baseline_prob)
    assert len(res.examples) == len(res.prompts) and res.control_features and 0 not in res.control_features
    good = sum(e["verdict"] == "fluent mention" for e in res.examples)
    assert good == round(res.success * len(res.prompts))       # the per-prompt verdicts add up to the rate
    with pytest.raises(FeatureError, match="strengths"):
        evaluate_concept_steering(model, d, db, "love", 0, strengths=(0.0,))


@pytest.mark.real
def test_fluency_separates_text_from_repetition_and_noise(smollm):
    """The unsteered model's own greedy continuations are fluent; a repeated word and token soup are not."""
    from mechscope.features.concepts import FluencyBound, continuation_scores, fluency_bound

    prompts = ["I think that", "Yesterday we went to", "The story begins with", "Everyone knows that"]
    bound = fluency_bound(smollm, prompts, max_new_tokens=10)
    assert 0.5 < bound.max_nll < 8.0                      # nats per token: text, neither copied nor random
    greedy = smollm.generate(prompts, max_new_tokens=10)
    scores = continuation_scores(smollm, prompts, greedy)
    assert sum(bound.fluent(n, d) for n, d in scores) >= 3
    repeated = continuation_scores(smollm, prompts, [" love love love love love love love love"] * 4)
    assert all(d < bound.min_distinct for _, d in repeated) and not any(bound.fluent(*s) for s in repeated)
    soup = continuation_scores(smollm, prompts, [" comthanCaseD qx zv Ł romycin bohyd aturity"] * 4)
    assert all(n > bound.max_nll for n, _ in soup)
    assert continuation_scores(smollm, ["a"], [""]) == [(float("inf"), 0.0)]
    assert not FluencyBound(2.0).fluent(2.5, 1.0) and FluencyBound(2.0).fluent(1.5, 0.5)
    with pytest.raises(FeatureError, match="continuations"):
        continuation_scores(smollm, prompts, greedy[:2])


def test_concept_steering_view_shows_sweep_controls_and_empty_runs():
    from mechscope.features.concepts import ConceptSteering

    res = ConceptSteering("music", 7, 0.9, 4.0, ["I think that"], 0.5, 0.0, 0.1, 0.2, 0.001, 0.002,
                          mentions=0.75, control_mentions=0.0, baseline_mentions=0.1, fluent=0.8, max_nll=3.1,
                          sweep=[{"strength": 2.0, "success": 0.25, "mentions": 0.25, "fluent": 1.0,
                                  "concept_prob": 0.01},
                                 {"strength": 4.0, "success": 0.5, "mentions": 0.75, "fluent": 0.8,
                                  "concept_prob": 0.2}],
                          control_features=[3], examples=[{"prompt": "I think that", "baseline": " it is",
                                                           "steered": " music is"}])
    html = res._repr_html_()
    assert "fluent mentions" in html and "x4" in html and "50% of 1" in html and " music is" in html
    check_self_contained(html)                                       # nothing fetched
    assert not re.search(r"import\s*\(", html)                       # nor imported at run time
    empty = ConceptSteering("music", 7, 0.9, 4.0, [], math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    assert "no prompts were steered" in empty._repr_html_()


@pytest.mark.real
def test_choose_concept_feature_prefers_the_feature_that_makes_the_model_say_it(smollm):
    """Two features peak on 'love' in their top examples; the one matching more often writes a random direction,
    the other the ' love' unembedding. The output score (on the selection prompts) picks the second."""
    from mechscope.features.concepts import choose_concept_feature, concept_feature_candidates

    model = smollm
    layer = model.cfg.n_layers - 1
    d = ms.dictionaries.create("topk", d_in=model.cfg.d_model, d_sae=4, k=1,
                               hook_name=f"blocks.{layer}.resid_post", model_name="smollm2-135m")
    love = model.W_U[:, model.to_single_token(" love")].detach().float()
    torch.manual_seed(0)
    with torch.no_grad():
        d.W_dec[0] = torch.nn.functional.normalize(torch.randn_like(love), dim=0)
        d.W_dec[1] = love / love.norm()

    class DB(FakeDB):
        def search(self, query: str, limit: int = 20):
            return [(f, "") for f in self.ex][:limit]

        def card(self, feature: int):
            return SimpleNamespace(max_act=50.0)

    db = DB({0: [_example(0, ["I", " love", " it"], 1)] * 10,
             1: [_example(1, ["we", " loved", " it"], 1)] * 6 + [_example(1, ["a", " b"], 0)] * 4})
    assert concept_feature_candidates(db, "love") == [(0, 1.0), (1, 0.6)]   # by matches, feature 0 first
    feature, match, score = choose_concept_feature(model, d, db, "love", n_candidates=2, strength=1.0)
    assert (feature, match) == (1, 0.6) and score > 1.0                      # by output score, feature 1
    assert choose_concept_feature(model, d, DB({}), "love") is None
