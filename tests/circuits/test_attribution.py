"""Attribution graphs on tiny random models: exact edges (verified by intervention), replacement parity, layout."""

from __future__ import annotations

import json

import pytest
import torch
from .helpers import random_clt, random_transcoders
from tiny import hooked

from mechscope.circuits import (AttributionConfig, FeatureIntervention, ReplacementModel, attribute,
                                feature_supernodes, merge_supernodes, replacement_values)
from mechscope.circuits.graph import AttributionGraph


@pytest.mark.parametrize("fam", ["llama", "gpt2", "neox", "gemma2", "qwen3"])
def test_replacement_reproduces_real_logits(fam):
    model = hooked(fam)
    rm = ReplacementModel(model, random_transcoders(model))
    state = rm.freeze(torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(3)))
    run = rm.run(state)
    real = model(state.tokens)[0]
    assert torch.allclose(run.logits[0], real, atol=1e-5), (run.logits[0] - real).abs().max()
    # the error nodes are what makes it exact: without them the logits move
    for l in state.errors:
        assert state.errors[l].abs().max() > 1e-3


def _check_every_edge(model, tcs, T=6, c=2.5, atol=2e-5):
    """Scale each source node alone (one batch element per source, one forward pass) and compare every target's
    change with (c - 1) * edge."""
    tokens = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(5))
    rm = ReplacementModel(model, tcs)
    graph = attribute(model, tcs, tokens, cfg=AttributionConfig(batch_size=64), replacement=rm)
    state = rm.freeze(tokens)
    base = replacement_values(rm, state, graph)
    assert torch.allclose(base[graph.logit_offset:], graph.logit_values, atol=1e-5)
    sources = list(range(graph.logit_offset))  # every feature, error and token node
    B = len(sources)
    embed_scale = torch.ones(B, T)
    error_scale = {l: torch.ones(B, T) for l in range(graph.n_layers)}
    feats = []
    for b, i in enumerate(sources):
        kind = graph.node_kind(i)
        if kind == "feature":
            feats.append((b, *graph.features[i].tolist()))
        elif kind == "error":
            layer, pos = divmod(i - graph.error_offset, graph.n_pos)
            error_scale[layer][b, pos] = c
        else:
            embed_scale[b, i - graph.token_offset] = c
    fb = torch.tensor(feats)

    def edit(layer, acts):
        acts = acts.clone()
        sel = fb[fb[:, 1] == layer]
        acts[sel[:, 0], sel[:, 2], sel[:, 3]] *= c
        return acts

    new = replacement_values(rm, state, graph, edit=edit, batch=B, embed_scale=embed_scale, error_scale=error_scale)
    change = new - base  # (B, n_nodes): row b = scaling source b
    predicted = (c - 1) * graph.adjacency[:, sources].T  # (B, n_nodes)
    targets = torch.ones(graph.n_nodes, dtype=torch.bool)
    targets[graph.error_offset:graph.logit_offset] = False  # errors and tokens are not targets
    change, predicted = change[:, targets], predicted[:, targets]
    own = torch.arange(graph.n_features)
    change[own, own] = predicted[own, own] = 0  # a feature's own pre-activation is not an edge
    worst = float((change - predicted).abs().max())
    assert worst <= atol * max(1.0, float(graph.adjacency.abs().max())), worst
    assert predicted.abs().max() > 0.1  # the check is not vacuous
    return graph


def test_every_edge_predicts_scaling_per_layer_transcoders():
    model = hooked("llama")
    graph = _check_every_edge(model, random_transcoders(model, d_sae=24, skip=True))
    assert graph.n_features > 30
    # causality: nothing flows from a later position or a later layer
    F = graph.n_features
    lay, pos = graph.features[:, 0], graph.features[:, 1]
    A = graph.adjacency[:F, :F]
    bad = (lay[None, :] >= lay[:, None]) | (pos[None, :] > pos[:, None])
    assert A[bad].abs().max() == 0


def test_every_edge_predicts_scaling_gpt2_layernorm():
    model = hooked("gpt2")
    _check_every_edge(model, random_transcoders(model, d_sae=24), T=5)


def test_every_edge_predicts_scaling_clt():
    model = hooked("llama")
    _check_every_edge(model, random_clt(model, d_sae=16), T=5)


def test_feature_limit_and_batch_size_do_not_change_edges():
    model = hooked("llama")
    tcs = random_transcoders(model)
    tokens = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(9))
    full = attribute(model, tcs, tokens, cfg=AttributionConfig(batch_size=64))
    small = attribute(model, tcs, tokens, cfg=AttributionConfig(batch_size=5, max_feature_nodes=20))
    assert small.n_features == 20
    keep = [int(((full.features == f).all(1)).nonzero()[0]) for f in small.features]
    cols = keep + list(range(full.error_offset, full.n_nodes))
    rows = keep + list(range(full.logit_offset, full.n_nodes))
    srows = list(range(20)) + list(range(small.logit_offset, small.n_nodes))
    scols = list(range(20)) + list(range(small.error_offset, small.n_nodes))
    assert torch.allclose(full.adjacency[rows][:, cols], small.adjacency[srows][:, scols], atol=1e-5)
    # the selected features are the most influential ones of the full graph's logit row neighbourhood
    inf = full.prune(1.0, 1.0).influence[:full.n_features]
    assert inf[keep].mean() > inf.mean()


def test_pruning_and_json_layout(tmp_path):
    model = hooked("llama")
    tcs = random_transcoders(model)
    graph = attribute(model, tcs, "hello there", cfg=AttributionConfig(batch_size=64))
    loose, tight = graph.prune(0.99, 0.999), graph.prune(0.5, 0.8)
    assert tight.node_mask.sum() < loose.node_mask.sum() <= graph.n_nodes
    assert tight.node_mask[graph.token_offset:].all()  # tokens and logits always kept
    path = graph.write_json(tmp_path / "graph.json", slug="t", node_threshold=0.8, edge_threshold=0.98,
                            supernodes=feature_supernodes(graph))
    data = json.loads(path.read_text())
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    assert data["metadata"]["prompt_tokens"] == graph.token_strs
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids))
    types = {n["feature_type"] for n in data["nodes"]}
    assert {"embedding", "logit"} <= types <= {"embedding", "logit", "cross layer transcoder",
                                                "mlp reconstruction error"}
    for n in data["nodes"]:
        assert isinstance(n["layer"], str) and isinstance(n["ctx_idx"], int) and "jsNodeId" in n
    logits = [n for n in data["nodes"] if n["feature_type"] == "logit"]
    assert sum(n["is_target_logit"] for n in logits) == 1 and logits[0]["token_prob"] > 0
    assert all(l["source"] in ids and l["target"] in ids for l in data["links"])
    assert data["links"]
    # round trip of the full graph, no pickle
    graph.save(tmp_path / "g")
    again = AttributionGraph.load(tmp_path / "g")
    assert torch.equal(again.adjacency, graph.adjacency) and again.token_strs == graph.token_strs


def test_supernodes_sum_edges():
    model = hooked("llama")
    graph = attribute(model, random_transcoders(model), torch.randint(0, 256, (1, 6)),
                      cfg=AttributionConfig(batch_size=64))
    groups = feature_supernodes(graph)
    assert groups
    names, adj = merge_supernodes(graph, groups[:1])
    members = [graph.node_ids().index(m) for m in groups[0][1:]]
    row = names.index(groups[0][0])
    logit = names.index(graph.node_id(graph.logit_offset))
    assert torch.allclose(adj[logit, row], graph.adjacency[graph.logit_offset, members].sum(), atol=1e-6)
    with pytest.raises(ValueError, match="not in the graph"):
        merge_supernodes(graph, [["x", "nope"]])
