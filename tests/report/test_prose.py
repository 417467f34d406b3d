"""Report sentences follow the numbers: changing the inputs changes the conclusion."""

from __future__ import annotations

import math

from mechscope.report import prose


def test_attribution_patching_branches_on_both_correlations():
    a = prose.attribution_patching(0.99, 0.40)
    b = prose.attribution_patching(0.99, 0.95)
    c = prose.attribution_patching(0.2, 0.1)
    assert len({a, b, c}) == 3
    assert "at most for where" in prose.attribution_patching(0.99, 0.2)
    assert "Both are strong" in b and "Both are weak" in c
    assert "0.99" in a and "0.40" in a
    assert "undefined" in prose.attribution_patching(math.nan, 0.5)


def test_dictionary_quality_verdicts():
    good = prose.dictionary_quality("SAE", 0.1, 0.95, 0.01)
    poor = prose.dictionary_quality("SAE", 0.6, 0.5, 0.3)
    assert "keeps most" in good and "loses much" in poor and "high share" in poor and "high share" not in good
    assert "0.95" in good and "0.50" in poor


def test_steering_verdicts():
    works = prose.steering("music", 7, 0.8, 0.1, 0.0, 0.2, 0.001, 0.001, 12)
    weak = prose.steering("music", 7, 0.3, 0.1, 0.0, 0.2, 0.001, 0.001, 12)
    likely = prose.steering("music", 7, 0.0, 0.0, 0.0, 0.05, 0.001, 0.001, 12)
    fails = prose.steering("music", 7, 0.1, 0.2, 0.1, 0.001, 0.001, 0.001, 12)
    assert "steers toward the concept" in works and "minority" in weak
    assert "more likely" in likely and "does not steer" in fails
    assert "80%" in works and "10%" in works
    # mentions that come only with broken text are named as such, not as steering
    broken = prose.steering("music", 7, 0.0, 0.0, 0.0, 0.3, 0.001, 0.001, 12, mentions=0.9, control_mentions=0.0,
                            baseline_mentions=0.0, strength=16)
    assert "breaking them" in broken and "×16" in broken and "90% mention it at all" in broken
    fluent = prose.steering("music", 7, 0.6, 0.0, 0.0, 0.3, 0.001, 0.001, 12, mentions=0.9, control_mentions=0.0,
                            baseline_mentions=0.0, strength=4)
    assert "steers toward the concept" in fluent and "breaking" not in fluent
    sweep = [{"strength": 2.0, "mentions": 0.1, "fluent": 1.0}, {"strength": 8.0, "mentions": 0.6, "fluent": 0.3},
             {"strength": 16.0, "mentions": 0.2, "fluent": 0.0}]
    assert prose.steering_sweep(7, sweep) == ("Feature 7 swept over strengths: mentions of the concept (of any kind) "
                                              "peak at ×8 (60%); from ×8 on, fewer than half of the continuations "
                                              "are fluent.")
    calm = [{"strength": 1.0, "mentions": 0.0, "fluent": 0.9}]
    assert "no strength makes" in prose.steering_sweep(7, calm) and "every strength" in prose.steering_sweep(7, calm)


def test_graph_and_faithfulness_and_group():
    full = prose.graph_scores(0.6, 0.8, 30, 30)
    partial = prose.graph_scores(0.1, 0.5, 1, 30)
    assert "every one of the 30" in full and "carry most" in full
    assert "1 of 30" in partial and "90%" in partial
    assert "borne out" in prose.faithfulness("real", 0.2, 0.5, 10) and "predicts what" in prose.faithfulness(
        "graph", 0.99, 1.0, 10)
    assert "undefined" in prose.faithfulness("real", math.nan, 0.5, 10)
    assert "what freezing leaves out" in prose.live_graph(0.45, 0.67, 10)
    assert "does not help" in prose.live_graph(0.6, 0.4, 10) and "about the same" in prose.live_graph(0.5, 0.52, 10)
    assert "0.67" in prose.live_graph(0.45, 0.67, 10) and "could not" in prose.live_graph(math.nan, 0.5, 10)
    good = prose.group_ablation(-0.09, -0.1, -0.01, 10)
    wrong = prose.group_ablation(0.09, -0.1, -0.01, 10)
    same = prose.group_ablation(-0.01, -0.1, -0.01, 10)
    assert "holds within" in good and "opposite sign" in wrong and "no more than random" in same
