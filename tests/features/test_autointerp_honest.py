"""Autointerp never scores what the model did not say: no template explanations, no 0.5 for unparseable replies.

A scripted LLM client stands in for the model (what matters here is what is done with its replies).
"""

from __future__ import annotations

import math

import pytest

from mechscope.features import FeatureDB, build_database, feature_stats
from mechscope.features.autointerp import AutointerpConfig, ScorerResult, explain, interpret, usable_explanation
from mechscope.features.llm import yes_from_text
from mechscope.features.stats import Example


def _ex(feature: int, seq: int, act: float = 2.0) -> Example:
    toks = ["def", " f", "(", "x", ")", ":"]
    acts = [0.0, 0.0, act, 0.0, 0.0, 0.0]
    return Example(feature, act, list(range(6)), acts, 2, seq, toks)


class Source:
    """Feature f's examples live in sequences 100 f + i (so other features give negatives)."""

    d_sae = 4

    def top_examples(self, f):
        return [_ex(f, 100 * f + i) for i in range(10)]

    def sampled_examples(self, f):
        return [_ex(f, 100 * f + 50 + i, 0.5) for i in range(4)]


class Scripted:
    """Answers chat() with ``explanation`` and yes_probability() from ``verdicts`` in turn."""

    def __init__(self, explanation: str, verdicts=()):
        self.explanation, self.verdicts, self.asked = explanation, list(verdicts), 0

    def chat(self, messages, max_tokens=128, temperature=0.0):
        return self.explanation

    def yes_probability(self, messages):
        self.asked += 1
        return self.verdicts.pop(0) if self.verdicts else None


CFG = AutointerpConfig(n_explain=3, n_score=2, n_negative=2)


@pytest.mark.parametrize("reply", ["", "   \n  ", "...", "**", "I'm not sure.", "Unknown", "N/A", "I cannot tell"])
def test_no_usable_explanation_is_recorded_as_none_and_never_scored(reply):
    client = Scripted(reply, [0.9] * 20)
    assert usable_explanation(reply) is None
    assert explain(client, Source().top_examples(1), CFG) is None
    res = interpret(client, Source(), 1, CFG, negatives_from=[2, 3])
    assert res.explanation is None and res.status == "no_explanation" and res.scores == {}
    assert res.detection is None and res.fuzzing is None and client.asked == 0
    assert res.raw_reply == reply.strip()


def test_a_real_explanation_is_kept_and_scored():
    client = Scripted("Opening brackets in function definitions.\nMore text", [0.9, 0.8, 0.1, 0.2] + [0.7, 0.3] * 2)
    res = interpret(client, Source(), 1, CFG, negatives_from=[2, 3])
    assert res.explanation == "Opening brackets in function definitions." and res.status == "ok"
    assert res.scores["detection"] == {"precision": 1.0, "recall": 1.0, "accuracy": 1.0, "auroc": 1.0, "n": 4,
                                       "n_unparsed": 0}


def test_unparseable_score_replies_are_left_out_not_counted_as_half():
    # detection: two positives (one unparseable), two negatives (one unparseable)
    res = interpret(Scripted("brackets", [0.9, None, None, 0.2, 0.9, 0.1, None, None]), Source(), 1, CFG,
                    negatives_from=[2, 3])
    assert res.status == "partly_unscored"
    det = res.scores["detection"]
    assert det["n"] == 2 and det["n_unparsed"] == 2 and det["auroc"] == 1.0 and det["accuracy"] == 1.0
    assert None not in [p for p in res.detection.p_yes if p is not None]
    everything_unparseable = interpret(Scripted("brackets", []), Source(), 1, CFG, negatives_from=[2, 3])
    assert everything_unparseable.status == "unscored" and everything_unparseable.scores == {}


def test_yes_no_parsing_and_metrics_without_evidence():
    assert [yes_from_text(t) for t in ("Yes", " yes.", "No", "no,", '"No"', "None of them", "Not sure", "Maybe", "")] \
        == [1.0, 1.0, 0.0, 0.0, 0.0, None, None, None, None]
    r = ScorerResult("x", [True, True, False], [None, None, None])
    assert r.n_unparsed == 3 and all(math.isnan(v) for v in (r.precision, r.recall, r.accuracy, r.auroc))
    r = ScorerResult("x", [True, False], [0.1, 0.2])  # predicts nothing positive: precision is undefined, not 0
    assert math.isnan(r.precision) and r.recall == 0.0 and r.accuracy == 0.5


def test_the_database_and_cards_show_the_status(tmp_path):
    import mechscope as ms
    from mechscope.features import FeatureError
    from tiny import hooked

    model = hooked("llama")
    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    stats = feature_stats(model, sae, ["def f(x): return x", "import os"], batch_size=2)
    path = build_database(tmp_path / "f.db", stats, model, sae)
    with FeatureDB(path) as db:
        db.set_explanation(1, None)
        db.set_explanation(2, "brackets", {"detection": {"auroc": 0.75}}, status="partly_unscored")
        with pytest.raises(FeatureError, match="explanation=None"):
            db.set_explanation(3, "   ")
        c1, c2, c3 = db.card(1), db.card(2), db.card(3)
    assert c1.explanation is None and c1.explanation_status == "no_explanation"
    assert c2.explanation == "brackets" and c2.explanation_status == "partly_unscored"
    assert c2.scores["detection"] == {"auroc": 0.75}
    assert c3.explanation is None and c3.explanation_status is None  # never explained
    from mechscope.features.dashboards import feature_html

    assert "none usable from the model (status: no_explanation)" in feature_html(c1)
    assert "(status: partly_unscored)" in feature_html(c2)
