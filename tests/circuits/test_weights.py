"""Weight-based circuits: with attention switched off, every same-position feature edge is its residual-direct part."""

from __future__ import annotations

import pytest
import torch
from .helpers import random_transcoders
from tiny import hooked

from mechscope.circuits import AttributionConfig, ReplacementModel, attribute
from mechscope.circuits.weights import de_embeddings, mlp_in_norm, split_edges, virtual_weights


@pytest.mark.parametrize("fam", ["llama", "gpt2"])
def test_edges_split_into_direct_and_attention_parts(fam):
    model = hooked(fam)
    tcs = random_transcoders(model)
    tokens = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(4))
    rm = ReplacementModel(model, tcs)
    graph = attribute(model, tcs, tokens, cfg=AttributionConfig(batch_size=64), replacement=rm)
    split = split_edges(graph, rm, rm.freeze(tokens))
    assert len(split.edge) > 20 and split.via_attention.abs().max() > 1e-3  # attention matters in general
    with torch.no_grad():  # switch attention output off: only the residual-direct path is left
        for l in range(model.cfg.n_layers):
            model._block_module(l, "attn.z").weight.zero_()
            if model.b_O(l) is not None:
                model.b_O(l).zero_()
    rm = ReplacementModel(model, tcs)
    graph = attribute(model, tcs, tokens, cfg=AttributionConfig(batch_size=64), replacement=rm)
    split = split_edges(graph, rm, rm.freeze(tokens))
    assert torch.allclose(split.edge, split.direct, atol=1e-5 * max(1.0, float(split.edge.abs().max())))
    # every nonzero feature edge is between features at one position now
    F = graph.n_features
    t, s = graph.adjacency[:F, :F].nonzero(as_tuple=True)
    assert torch.equal(graph.features[t, 1], graph.features[s, 1])


def test_virtual_weights_and_de_embeddings():
    model = hooked("llama")
    tcs = random_transcoders(model)
    rm = ReplacementModel(model, tcs)
    name, spec = mlp_in_norm(model, 1)
    assert name.endswith("post_attention_layernorm")
    V = virtual_weights(model, rm.tc, 0, 2)
    assert V.shape == (48, 48)
    _, spec2 = mlp_in_norm(model, 2)
    with torch.no_grad():
        manual = (tcs[0].W_dec * spec2.weight) @ tcs[2].W_enc  # through the gain of the layer-2 MLP norm
    assert torch.allclose(V, manual, atol=1e-5)
    with pytest.raises(ValueError, match="after"):
        virtual_weights(model, rm.tc, 2, 1)
    top = de_embeddings(model, rm.tc, 1, 5, k=4)
    assert len(top) == 4 and [s for *_, s in top] == sorted([s for *_, s in top], reverse=True)
    with torch.no_grad():
        x = spec(model.W_E[top[0][0]].float()) @ tcs[1].W_enc[:, 5]
    assert abs(float(x) - top[0][2]) < 1e-4
