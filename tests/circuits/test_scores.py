"""circuit-tracer's replacement and completeness scores: a hand-computed graph, graphs without error, JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from .helpers import random_transcoders
from tiny import hooked

from mechscope.circuits import AttributionConfig, attribute
from mechscope.circuits.graph import AttributionGraph
from mechscope.circuits.scores import graph_scores


def hand_graph(adjacency: torch.Tensor) -> AttributionGraph:
    """2 layers x 1 position: features f0 (layer 0) and f1 (layer 1), errors e0 e1, token t0, logits l0 l1."""
    return AttributionGraph(
        prompt_tokens=torch.tensor([7]), token_strs=["a"], features=torch.tensor([[0, 0, 3], [1, 0, 5]]),
        activations=torch.tensor([1.0, 2.0]), pre_activations=torch.tensor([1.0, 2.0]),
        logit_tokens=torch.tensor([11, 12]), logit_token_strs=["x", "y"], logit_probs=torch.tensor([0.5, 0.25]),
        logit_values=torch.tensor([1.0, 0.5]), n_layers=2, adjacency=adjacency)


F0, F1, E0, E1, T0, L0, L1 = range(7)


def hand_adjacency() -> torch.Tensor:
    A = torch.zeros(7, 7)
    A[F0, T0] = 2.0                                  # f0 <- t0
    A[F1, F0], A[F1, T0], A[F1, E0] = -1.0, 2.0, 1.0  # f1 <- f0, t0, e0   (|row| sum 4)
    A[L0, F1], A[L0, F0], A[L0, E1] = 3.0, 1.0, -1.0  # l0 <- f1, f0, e1   (|row| sum 5)
    A[L1, E0], A[L1, T0] = 1.0, -1.0                  # l1 <- e0, t0
    return A


# By hand, with w = (l0: 0.5, l1: 0.25) and A the row-normalised |adjacency|:
#   w A      : f1 .3, f0 .1, e1 .1 (from l0); e0 .125, t0 .125 (from l1)
#   w A^2    : t0 .1 (via f0); f0 .075, t0 .15, e0 .075 (via f1)
#   w A^3    : t0 .075 (via f0)
#   influence: f0 .175, f1 .3, e0 .2, e1 .1, t0 .45
#   replacement = .45 / (.45 + .3) = 0.6
#   error shares of the normalised rows: f1 .25, l0 .2, l1 .5 (others 0), so
#   completeness = (.175 + .3*.75 + .2 + .1 + .45 + .5*.8 + .25*.5) / (.175 + .3 + .2 + .1 + .45 + .5 + .25)
HAND_REPLACEMENT = 0.6
HAND_COMPLETENESS = 1.675 / 1.975


def test_scores_match_hand_computation():
    g = hand_graph(hand_adjacency())
    assert g.replacement_score == pytest.approx(HAND_REPLACEMENT, abs=1e-6)
    assert g.completeness_score == pytest.approx(HAND_COMPLETENESS, abs=1e-6)
    w = torch.zeros(7)
    w[L0], w[L1] = 0.5, 0.25
    assert graph_scores(hand_adjacency(), w, slice(E0, T0), slice(T0, L0)) == pytest.approx(
        (HAND_REPLACEMENT, HAND_COMPLETENESS), abs=1e-6)


def test_scores_use_row_normalised_absolute_edges():
    A = hand_adjacency()
    A[F1] *= -7.0  # a target's row scale and signs do not matter (rows are normalised, |.|) ...
    g = hand_graph(A)
    assert (g.replacement_score, g.completeness_score) == pytest.approx((HAND_REPLACEMENT, HAND_COMPLETENESS))
    B = hand_adjacency()
    B[:, E0] *= 3.0  # ... but a source's column scale does: e0 takes a larger share of f1's and l1's input
    g = hand_graph(B)
    # f1's row becomes f0 1/6, t0 1/3, e0 1/2; l1's row e0 3/4, t0 1/4; redo the series by hand:
    # wA: f1 .3, f0 .1, e1 .1, e0 .1875, t0 .0625; wA^2: t0 .1, f0 .05, t0 .1, e0 .15; wA^3: t0 .05
    inf = {"f0": .15, "f1": .3, "e0": .3375, "e1": .1, "t0": .3125}
    assert g.replacement_score == pytest.approx(.3125 / (.3125 + .4375), abs=1e-6)
    num = inf["f0"] + inf["f1"] * .5 + inf["e0"] + inf["e1"] + inf["t0"] + .5 * .8 + .25 * .25
    assert g.completeness_score == pytest.approx(num / (sum(inf.values()) + .75), abs=1e-6)


def test_graph_without_error_scores_one_and_edgeless_graph_has_no_scores():
    model = hooked("llama")
    graph = attribute(model, random_transcoders(model), torch.randint(0, 256, (1, 6)),
                      cfg=AttributionConfig(batch_size=64))
    assert 0 < graph.replacement_score < 1 and 0 < graph.completeness_score < 1
    adj = graph.adjacency.clone()
    adj[:, graph.error_offset:graph.token_offset] = 0
    clean = dataclasses.replace(graph, adjacency=adj, replacement_score=None, completeness_score=None)
    assert clean.replacement_score == 1.0 and clean.completeness_score == 1.0
    empty = hand_graph(torch.zeros(7, 7))
    assert math.isnan(empty.replacement_score)
    assert empty.to_json()["metadata"]["replacement_score"] is None


def test_error_free_replacement_model_scores_one():
    """MLPs that output nothing and transcoders that decode nothing: every error node is exactly zero."""
    model = hooked("llama")
    with torch.no_grad():
        for layer in model.hf.model.layers:
            layer.mlp.down_proj.weight.zero_()
    tcs = random_transcoders(model)
    with torch.no_grad():
        for t in tcs:
            t.W_dec.zero_()
            t.b_dec.zero_()
    graph = attribute(model, tcs, torch.randint(0, 256, (1, 6)), cfg=AttributionConfig(batch_size=64))
    assert graph.adjacency[:, graph.error_offset:graph.token_offset].abs().max() == 0
    assert graph.adjacency[graph.logit_offset:, graph.token_offset:graph.logit_offset].abs().max() > 0
    assert graph.replacement_score == 1.0 and graph.completeness_score == 1.0


def test_scores_in_json_metadata_and_saved_graph(tmp_path):
    model = hooked("llama")
    graph = attribute(model, random_transcoders(model), "hello there", cfg=AttributionConfig(batch_size=64))
    assert (graph.replacement_score, graph.completeness_score) == graph.scores()
    meta = json.loads(graph.write_json(tmp_path / "graph.json").read_text())["metadata"]
    assert meta["replacement_score"] == graph.replacement_score
    assert meta["completeness_score"] == graph.completeness_score
    graph.save(tmp_path / "g")
    again = AttributionGraph.load(tmp_path / "g")
    assert again.replacement_score == graph.replacement_score
    assert json.loads((tmp_path / "g" / "graph_meta.json").read_text())["completeness_score"] == \
        graph.completeness_score
