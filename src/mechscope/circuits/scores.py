"""Influence on the logits and the two graph scores of circuit-tracer (``compute_graph_scores``).

Both work on an adjacency laid out as in :mod:`mechscope.circuits.graph` (rows targets, columns sources; nodes in
the blocks features, errors, tokens, logits) and on *logit weights* ``w``: zero except at the logit nodes, where
they are the target tokens' probabilities (not renormalised). Definitions (circuit-tracer 0.5.0, same formulas):

- ``A = normalize_rows(adjacency)``: ``|adjacency|`` with every row divided by its sum (rows summing to 0 stay 0:
  error and token rows, and any target without incoming edges).
- ``influence = w A + w A^2 + ...`` (the series ends: the graph is a DAG); a node's share of the logits' weight
  reaching it backwards through the normalised edges. The logit weights themselves are not part of it.
- **replacement score** ``= I_tok / (I_tok + I_err)`` with ``I_tok``, ``I_err`` the summed influence of the token
  and the error nodes. Every feature row of ``A`` sums to 1, so the logits' weight flows back until it ends at
  tokens or errors (the only nodes without incoming edges): the score is the fraction of end-to-end influence
  that reaches the tokens through features alone. ``nan`` when neither tokens nor errors receive any (no edges).
- **completeness score** ``= sum_i (1 - e_i) (influence_i + w_i) / sum_i (influence_i + w_i)`` over *all* nodes,
  where ``e_i = sum_{j error} A[i, j]`` is the share of node ``i``'s normalised incoming edges that come from error
  nodes. Nodes without incoming edges (tokens, errors, isolated features) have ``e_i = 0``, so they count as
  complete: as in circuit-tracer, an error node's own influence sits in both sums.

Both scores are computed on the *unpruned* graph (circuit-tracer's ``compute_graph_scores`` reads
``graph.adjacency_matrix``, not a pruned copy), in float32 like circuit-tracer (one normalised copy of the
adjacency, the memory that matters for large graphs), with the final sums in float64. A graph whose error nodes
carry nothing (all error columns zero) scores 1 and 1.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxtyping import Float
from torch import Tensor


class GraphScores(NamedTuple):
    """circuit-tracer's graph scores (definitions in :mod:`mechscope.circuits.scores`)."""

    replacement_score: float
    """Fraction of the logits' influence that reaches tokens rather than error nodes (1 = no error in any path)."""
    completeness_score: float
    """Influence-weighted fraction of every node's normalised input that does not come from error nodes."""

    def _repr_html_(self) -> str:
        from .. import display

        return display.key_values([("replacement score", self.replacement_score),
                                   ("completeness score", self.completeness_score)], title="graph scores").html()


def normalize_rows(adj: Tensor) -> Tensor:
    """``|adj|`` with each row divided by its sum (zero rows stay zero)."""
    a = adj.abs()
    return a / a.sum(1, keepdim=True).clamp_min(1e-10)


def influence_of(A: Tensor, weights: Tensor, max_iter: int = 1000) -> Tensor:
    """``weights (A + A^2 + ...)`` for an already normalised ``A`` (a DAG, so the series ends)."""
    current = weights @ A
    total = current.clone()
    for _ in range(max_iter):
        current = current @ A
        if not current.any():
            break
        total += current
    return total


def influence(adj: Tensor, weights: Tensor, max_iter: int = 1000) -> Tensor:
    """``weights (A + A^2 + ...)`` on the row-normalised absolute adjacency (a DAG, so the series ends)."""
    return influence_of(normalize_rows(adj), weights, max_iter)


def graph_scores(adjacency: Float[Tensor, "n n"], logit_weights: Float[Tensor, " n"], error_slice: slice,
                 token_slice: slice) -> GraphScores:
    """Replacement and completeness scores of ``adjacency`` (module docstring); ``error_slice`` / ``token_slice``
    locate the error and token nodes, ``logit_weights`` is zero except at the logit nodes."""
    n = adjacency.shape[0]
    if adjacency.shape != (n, n) or logit_weights.shape != (n,):
        raise ValueError(f"expected a square adjacency and one weight per node, got {tuple(adjacency.shape)} and "
                         f"{tuple(logit_weights.shape)}")
    A = adjacency.float().abs()  # (n, n): the one copy of the adjacency made here
    A /= A.sum(1, keepdim=True).clamp_min(1e-10)
    inf = influence_of(A, logit_weights.float()).double()  # (n,)
    tok, err = inf[token_slice].sum(), inf[error_slice].sum()
    denom = tok + err
    replacement = float(tok / denom) if float(denom) > 0 else float("nan")
    non_error = 1.0 - A[:, error_slice].sum(1).double()  # (n,)
    out_inf = inf + logit_weights.double()
    total = out_inf.sum()
    completeness = float((non_error * out_inf).sum() / total) if float(total) > 0 else float("nan")
    return GraphScores(replacement, completeness)


__all__ = ["GraphScores", "graph_scores", "influence", "influence_of", "normalize_rows"]
