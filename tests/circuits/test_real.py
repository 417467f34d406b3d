"""Real-model checks on smollm2-135m (light: random transcoders on a few layers; the trained-transcoder check with
ablation correlations is bench/bench_attribution.py)."""

from __future__ import annotations

import torch

from mechscope.circuits import (AttributionConfig, FeatureIntervention, ReplacementModel, attribute, real_logits,
                                replacement_values)
from mechscope.dictionaries import create_mlp_transcoder


def _transcoders(model, layers=(2, 10, 20)):
    torch.manual_seed(0)
    tcs = {}
    for l in layers:
        tc = create_mlp_transcoder(l, d_model=model.cfg.d_model, d_sae=64)
        with torch.no_grad():
            tc.W_dec.mul_(0.3)  # zero encoder bias: about half the features fire
        tcs[l] = tc
    return tcs


def test_smollm_graph_builds_and_edges_are_exact(smollm):
    tcs = _transcoders(smollm)
    prompt = "The capital of France is"
    rm = ReplacementModel(smollm, tcs)
    state = rm.freeze(prompt)
    assert torch.allclose(rm.run(state).logits[0], state.logits, atol=1e-3)
    graph = attribute(smollm, tcs, prompt, cfg=AttributionConfig(max_feature_nodes=16, batch_size=16,
                                                                  max_n_logits=3), replacement=rm)
    assert graph.n_features == 16 and graph.adjacency[graph.logit_offset:].abs().sum() > 0
    base = replacement_values(rm, state, graph)
    for i in (0, graph.n_features - 1):
        layer, pos, idx = graph.features[i].tolist()
        new = replacement_values(rm, state, graph, [FeatureIntervention(layer, pos, idx, "ablate")])
        pred = -graph.adjacency[:, i]
        change = new - base
        change[i] = pred[i] = 0
        assert torch.allclose(change[graph.logit_offset:], pred[graph.logit_offset:], atol=2e-3)
    # real model through spliced transcoders: no edit = the model, an edit moves the logits
    real = real_logits(smollm, tcs, prompt)
    assert torch.allclose(real, state.logits[-1].float(), atol=1e-3)
    layer, pos, idx = graph.features[0].tolist()
    edited = real_logits(smollm, tcs, prompt, [FeatureIntervention(layer, pos, idx, "clamp", 50.0)])
    assert (edited - real).abs().max() > 1e-3
