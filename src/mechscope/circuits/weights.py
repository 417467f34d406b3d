"""Weight-based transcoder circuits: input-invariant feature connections, their input-dependent share, de-embeddings.

A feature ``i`` of layer ``l`` writes ``a_i * d_i`` (its decoder vector) into the residual; a feature ``j`` of a
later layer ``m`` reads ``e_j . norm_m(resid)`` where ``norm_m`` is the norm in front of MLP ``m``. With the norm
linearised (``norm(x) = s(x) * g * C x``: gain ``g``, centring ``C`` for LayerNorm, per-position scale ``s``), the
residual-direct connection is::

    virtual weight   V[i, j] = (g * C d_i) . e_j                        input-invariant (weights only)
    on a prompt      a_i(t) * s_m(t) * V[i, j]                         same position t, direct residual path

The attribution edge between the two feature nodes at one position (:mod:`.attribution`) also contains paths
through attention; :func:`split_edges` separates an edge into its residual-direct part (input-invariant weight
times the prompt's activation and norm scale) and the rest (attention-mediated). A CLT feature writes to every
layer from ``l`` on; its direct path to layer ``m`` sums its decoders of layers ``l .. m-1``.

De-embeddings (:func:`de_embeddings`) score every token by ``e_j . norm_m(W_E[token])``: the tokens that drive a
feature through the direct path from the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..models.hooked import HookedModel
from ..models.norms import mlp_in_norm
from .graph import AttributionGraph
from .replacement import FrozenState, ReplacementModel
from .transcoders import TranscoderStack


def _direct_decoder(tc: TranscoderStack, src_layer: int, idx: Tensor, tgt_layer: int) -> Tensor:
    """What one unit of each source feature adds to the residual before ``tgt_layer``'s MLP reads it."""
    vecs = tc.decoder_vectors(src_layer, idx)
    parts = [v for m, v in vecs.items() if m < tgt_layer]
    if not parts:
        raise ValueError(f"features of layer {src_layer} write nothing before layer {tgt_layer}")
    return torch.stack(parts).sum(0).float()  # (n, D)


@torch.no_grad()
def virtual_weights(model: HookedModel, tc: TranscoderStack, src_layer: int, tgt_layer: int,
                    src_idx: Int[Tensor, " n_src"] | None = None,
                    tgt_idx: Int[Tensor, " n_tgt"] | None = None) -> Float[Tensor, "n_src n_tgt"]:
    """Input-invariant connections ``V[i, j]`` from features of ``src_layer`` to features of ``tgt_layer``."""
    if tgt_layer <= src_layer:
        raise ValueError("the target layer must come after the source layer")
    src_idx = torch.arange(tc.d_sae(src_layer)) if src_idx is None else torch.as_tensor(src_idx)
    tgt_idx = torch.arange(tc.d_sae(tgt_layer)) if tgt_idx is None else torch.as_tensor(tgt_idx)
    _, spec = mlp_in_norm(model, tgt_layer)
    dec = spec.apply_linear(_direct_decoder(tc, src_layer, src_idx, tgt_layer), torch.ones(()))  # (n_s, D)
    return dec @ tc.encoder_vectors(tgt_layer, tgt_idx).float().T  # (n_s, n_t)


@dataclass
class EdgeSplit:
    """Feature -> feature edges at the same position, split into residual-direct and attention-mediated parts."""

    source: Int[Tensor, " n"]
    """Graph node index of the source feature."""
    target: Int[Tensor, " n"]
    edge: Float[Tensor, " n"]
    """The attribution edge."""
    virtual_weight: Float[Tensor, " n"]
    """Input-invariant weight ``V[i, j]``."""
    direct: Float[Tensor, " n"]
    """Input-dependent residual-direct part ``a_i * s_m(t) * V[i, j]``."""

    @property
    def via_attention(self) -> Tensor:
        return self.edge - self.direct


@torch.no_grad()
def split_edges(graph: AttributionGraph, rm: ReplacementModel, state: FrozenState) -> EdgeSplit:
    """Split every feature -> feature edge of ``graph`` whose endpoints share a position (see module docstring)."""
    F = graph.n_features
    A = graph.adjacency[:F, :F]
    tgt, src = A.nonzero(as_tuple=True)
    fs, ft = graph.features[src], graph.features[tgt]
    same = fs[:, 1] == ft[:, 1]
    src, tgt, fs, ft = src[same], tgt[same], fs[same], ft[same]
    vw = torch.zeros(len(src))
    direct = torch.zeros(len(src))
    for k in range(len(src)):
        ls, p, i = fs[k].tolist()
        lt, _, j = ft[k].tolist()
        v = virtual_weights(rm.model, rm.tc, ls, lt, torch.tensor([i]), torch.tensor([j]))[0, 0]
        name, _ = mlp_in_norm(rm.model, lt)
        s = state.norm_scales[name][0, p, 0]
        vw[k] = v
        direct[k] = graph.activations[src[k]] * s * v
    return EdgeSplit(src, tgt, A[tgt, src], vw, direct)


@torch.no_grad()
def de_embeddings(model: HookedModel, tc: TranscoderStack, layer: int, idx: int,
                  k: int = 10) -> list[tuple[int, str, float]]:
    """The ``k`` tokens whose embeddings alone most drive feature ``idx`` of ``layer``: (id, text, score)."""
    _, spec = mlp_in_norm(model, layer)
    W_E = model.W_E.float()  # (V, D)
    normed = spec(W_E)  # (V, D) as if each embedding were alone in the residual
    scores = normed @ tc.encoder_vectors(layer, torch.tensor([idx])).float()[0]  # (V,)
    top = scores.topk(min(k, len(scores)))
    return [(int(t), model.to_string([int(t)]) if model.tokenizer is not None else str(int(t)), float(s))
            for s, t in zip(top.values, top.indices)]


__all__ = ["EdgeSplit", "de_embeddings", "mlp_in_norm", "split_edges", "virtual_weights"]
