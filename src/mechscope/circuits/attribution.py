"""Attribution graphs through the frozen linear replacement model (the circuit-tracer method).

Given a prompt, the replacement model (:mod:`.replacement`) is frozen on it; then it is linear in the residual
stream, and the direct effect of any source node on any target node is exact:

- sources write to the residual: a token (its ``embed`` vector), an active feature (activation x decoder vector,
  into ``mlp_out`` of every layer it writes), an error node (its value, into ``mlp_out``);
- targets read from it: a feature's pre-activation is ``encoder_vector . mlp_in`` (``mlp_in`` is a frozen-norm
  linear image of the residual), a logit is ``final_norm[last] . (W_U[:, tok] - mean_v W_U[:, v])``.

The edge ``source -> target`` is ``<d target / d (residual at the source's write site), source vector>``, where the
gradient runs only through attention (frozen patterns), norms (frozen scales), the residual and transcoder skip paths:
every MLP path goes through a feature or an error node, which are held fixed, so edges are *direct* effects.
(``AttributionConfig.live_norms`` / ``live_attention`` differentiate through the norm scales / patterns instead:
first-order edges of a nonlinear model, not circuit-tracer's definition.) One backward pass gives a target's whole row;
rows are computed ``batch_size`` at a time by replaying the prompt ``batch_size`` times (one copy per target) with zero
"probe" leaves at every write site and keeping the forward graph for all batches.

Feature rows are computed in order of influence on the logits, estimated from the rows known so far (first the
logit rows, then repeatedly the most influential pending features), up to ``max_feature_nodes``; features never
selected are dropped from the graph. Memory is bounded by ``batch_size`` (forward graph of ``batch_size`` copies)
plus the dense rows (selected x active).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ..models.hooked import HookedModel
from ..models.tokens import Inputs
from .graph import AttributionGraph
from .replacement import FrozenState, ReplacementModel, RunOutput
from .transcoders import Transcoders, TranscoderStack

log = logging.getLogger(__name__)


@dataclass
class AttributionConfig:
    """Options of :func:`attribute`."""

    max_n_logits: int = 10
    """Most logit targets (top predictions at the last position) when no target tokens are given."""
    desired_logit_prob: float = 0.95
    """Take top predictions until their probabilities sum to this (or max_n_logits)."""
    max_feature_nodes: int | None = None
    """Most feature nodes whose rows are computed (chosen by influence); None means every active feature."""
    batch_size: int = 32
    """Targets per backward pass (the prompt is replayed this many times; memory grows with it)."""
    update_interval: int = 4
    """Batches of feature rows computed between two re-estimates of influence (circuit-tracer's default); when every
    active feature is requested no ranking is needed and none is computed."""
    drop_bos_features: bool = True
    """Leave out features at position 0 when the prompt starts with the tokenizer's BOS (they carry no signal).
    Their decoded output stays in the frozen replacement model as a constant; the position-0 error nodes keep their
    usual value (MLP output minus the full reconstruction). circuit-tracer zeroes those error nodes as well, so its
    position-0 error columns are 0 where mechscope's are not; every other edge agrees (bench/RESULTS.md)."""
    live_norms: bool = False
    """Differentiate through the normalisation scales (RMSNorm / LayerNorm denominators) instead of freezing them.
    Not circuit-tracer's definition: edges become first-order effects in the replacement model with live norms, so
    they no longer sum to their target's value (a norm is scale-invariant) and the graph is no longer exactly linear,
    but single-feature ablations in the real model follow it more closely (bench/RESULTS.md)."""
    live_attention: bool = False
    """Differentiate through the attention patterns (query-key path) instead of freezing them; as ``live_norms``."""

    def __post_init__(self) -> None:
        if self.max_n_logits < 1 or self.batch_size < 1 or self.update_interval < 1:
            raise ValueError("max_n_logits, batch_size and update_interval must be >= 1")
        if not 0 < self.desired_logit_prob <= 1:
            raise ValueError("desired_logit_prob must be in (0, 1]")
        if self.max_feature_nodes is not None and self.max_feature_nodes < 0:
            raise ValueError("max_feature_nodes must be >= 0 or None")


@dataclass
class _Active:
    layer: Tensor  # (n,)
    pos: Tensor  # (n,)
    idx: Tensor  # (n,)
    value: Tensor  # (n,)


def active_features(rm: ReplacementModel, state: FrozenState, drop_bos: bool) -> _Active:
    """Every nonzero feature activation, ordered by (layer, pos, index)."""
    parts = []
    bos = getattr(rm.model.tokenizer, "bos_token_id", None)
    skip0 = drop_bos and bos is not None and int(state.tokens[0, 0]) == bos and state.n_pos > 1
    for l in rm.tc.layers:
        a = state.acts[l]  # (T, S)
        pos, idx = a.nonzero(as_tuple=True)
        keep = pos > 0 if skip0 else torch.ones_like(pos, dtype=torch.bool)
        pos, idx = pos[keep], idx[keep]
        parts.append((torch.full_like(pos, l), pos, idx, a[pos, idx]))
    cat = [torch.cat([p[i] for p in parts]) if parts else torch.zeros(0) for i in range(4)]
    return _Active(cat[0].long(), cat[1].long(), cat[2].long(), cat[3].float())


def logit_targets(state: FrozenState, cfg: AttributionConfig,
                  tokens: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """Target token ids and their probabilities at the last position."""
    probs = state.logits[-1].float().softmax(-1)  # (V,)
    if tokens is not None:
        ids = torch.as_tensor(list(tokens), dtype=torch.long)
        return ids, probs[ids]
    p, ids = probs.sort(descending=True)
    n = int((p.cumsum(0) < cfg.desired_logit_prob).sum()) + 1
    n = min(n, cfg.max_n_logits)
    return ids[:n], p[:n]


class _RowComputer:
    """Holds one replay of ``batch`` copies and turns batches of target seeds into rows of direct effects."""

    def __init__(self, rm: ReplacementModel, state: FrozenState, active: _Active, batch: int,
                 live_norms: bool = False, live_attention: bool = False):
        self.rm, self.state, self.active, self.batch = rm, state, active, batch
        # Error nodes stay frozen, so live norms / patterns compute the same forward values; only the backward
        # signals change (full Jacobian instead of the frozen linear map).
        self.run: RunOutput = rm.run(state, batch=batch, probes=True, stop_at_final_norm=True,
                                     freeze_norms=not live_norms, freeze_attention=not live_attention)
        self.layers = sorted({int(l) for l in active.layer.tolist()})
        self.cols: dict[int, Tensor] = {}
        # Decoder vectors laid out per position, (T, slots, D) with zero padding, so a feature column is one batched
        # product over positions (n, T, D) x (T, slots, D) -> (n, T, slots) instead of a gathered (n, n_l, D) copy.
        self.dec: dict[int, dict[int, Tensor]] = {}
        self.slot: dict[int, Tensor] = {}
        T = state.n_pos
        for l in self.layers:
            sel = (active.layer == l).nonzero(as_tuple=True)[0]
            self.cols[l] = sel
            pos = active.pos[sel]  # sorted: active features are ordered by (layer, pos, index)
            counts = torch.bincount(pos, minlength=T)
            slot = torch.arange(len(pos)) - (counts.cumsum(0) - counts)[pos]
            self.slot[l] = slot
            width = int(counts.max()) if len(pos) else 0
            self.dec[l] = {}
            for m, v in rm.tc.decoder_vectors(l, active.idx[sel]).items():
                pad = torch.zeros(T, width, v.shape[-1])
                pad[pos, slot] = v.float()
                self.dec[l][m] = pad

    @property
    def n_cols(self) -> int:
        T, L = self.state.n_pos, self.rm.n_layers
        return len(self.active.value) + L * T + T

    def rows(self, seeds: list[tuple[str, int, int, Tensor]]) -> Float[Tensor, "n n_cols"]:
        """Rows for targets given as ``(site, layer, pos, vector)``; site is ``final_norm`` or ``mlp_in``."""
        st, run, T = self.state, self.run, self.state.n_pos
        outputs: dict[str, tuple[Tensor, Tensor]] = {}
        for j, (site, layer, pos, vec) in enumerate(seeds):
            key = site if site == "final_norm" else f"mlp_in.{layer}"
            if key not in outputs:
                t = run.final_norm if site == "final_norm" else run.mlp_in[layer]
                outputs[key] = (t, torch.zeros_like(t))
            outputs[key][1][j, pos] = vec.to(outputs[key][1].dtype)
        probe_keys = list(run.probes)
        grads = torch.autograd.grad([o for o, _ in outputs.values()], [run.probes[k] for k in probe_keys],
                                    grad_outputs=[g for _, g in outputs.values()], retain_graph=True,
                                    allow_unused=True)
        g = {k: (torch.zeros_like(run.probes[k]) if v is None else v).float() for k, v in zip(probe_keys, grads)}
        n = len(seeds)
        out = torch.zeros(n, self.n_cols)
        for l in self.layers:  # feature columns
            pos, slot = self.active.pos[self.cols[l]], self.slot[l]
            acc: Tensor | None = None  # (n, T, slots)
            for m, pad in self.dec[l].items():
                term = torch.einsum("ntd,tkd->ntk", g[f"mlp_out.{m}"][:n], pad)
                acc = term if acc is None else acc + term
            if acc is not None:
                out[:, self.cols[l]] = acc[:, pos, slot] * self.active.value[self.cols[l]]
        base = len(self.active.value)
        for l in range(self.rm.n_layers):  # error columns, layer-major
            out[:, base + l * T: base + (l + 1) * T] = (g[f"mlp_out.{l}"][:n] * st.errors[l].float()).sum(-1)
        base += self.rm.n_layers * T
        out[:, base:base + T] = (g["embed"][:n] * st.embed.float()).sum(-1)
        return out


def _influence(rows: Tensor, row_cols: Tensor, weights: Tensor, n_cols: int, depth: int) -> Tensor:
    """Influence of every column on the weighted targets, through the rows known so far (abs, row-normalised)."""
    norm = rows.abs()
    norm = norm / norm.sum(1, keepdim=True).clamp_min(1e-10)  # (R, C)
    total = torch.zeros(n_cols)
    x = weights.clone()  # (R,) weight on each row's node
    for _ in range(depth):
        contrib = x @ norm  # (C,)
        total += contrib
        x = torch.where(row_cols >= 0, contrib[row_cols.clamp_min(0)], torch.zeros(()))
        if float(x.abs().sum()) < 1e-12:
            break
    return total


def attribute(model: HookedModel, transcoders: Transcoders | TranscoderStack, prompt: Inputs, *,
              target_tokens: Sequence[int] | None = None, cfg: AttributionConfig | None = None,
              replacement: ReplacementModel | None = None) -> AttributionGraph:
    """Build the attribution graph of ``prompt`` (text or token ids) for the model's top predictions (or
    ``target_tokens``) at the last position; see the module docstring."""
    cfg = cfg or AttributionConfig()
    rm = replacement or ReplacementModel(model, transcoders)
    state = rm.freeze(prompt)
    active = active_features(rm, state, cfg.drop_bos_features)
    logit_ids, logit_probs = logit_targets(state, cfg, target_tokens)
    n_act, T, L = len(active.value), state.n_pos, rm.n_layers
    limit = n_act if cfg.max_feature_nodes is None else min(n_act, cfg.max_feature_nodes)
    log.info("prompt of %d tokens: %d active features, %d logit targets, computing %d feature rows",
             T, n_act, len(logit_ids), limit)
    comp = _RowComputer(rm, state, active, cfg.batch_size, cfg.live_norms, cfg.live_attention)
    dirs = rm.logit_direction(logit_ids)  # (n_logits, D)
    enc = {l: rm.tc.encoder_vectors(l, active.idx[comp.cols[l]]).float() for l in comp.layers}
    feat_vec = torch.zeros(n_act, model.cfg.d_model)
    for l in comp.layers:
        feat_vec[comp.cols[l]] = enc[l]

    n_log = len(logit_ids)
    R = torch.zeros(n_log + limit, comp.n_cols)  # rows of direct effects, logits first, in computation order
    rc = torch.full((n_log + limit,), -1, dtype=torch.long)  # column of each row's node (-1 for logits)
    for i in range(0, n_log, cfg.batch_size):
        seeds = [("final_norm", -1, T - 1, dirs[j]) for j in range(i, min(i + cfg.batch_size, n_log))]
        R[i:i + len(seeds)] = comp.rows(seeds)
    done = torch.zeros(n_act, dtype=torch.bool)
    n_rows = n_log
    w = torch.zeros(n_log + limit)
    w[:n_log] = logit_probs.float()
    bar = tqdm(total=limit, desc="feature rows", disable=limit < 4 * cfg.batch_size, leave=False)
    while n_rows - n_log < limit:
        if limit == n_act:  # every feature: order does not matter
            pending = torch.arange(n_act)
        else:
            inf = _influence(R[:n_rows], rc[:n_rows], w[:n_rows], comp.n_cols, depth=L + 2)[:n_act]
            rank = inf.argsort(descending=True)
            pending = rank[~done[rank]][:min(cfg.update_interval * cfg.batch_size, limit - (n_rows - n_log))]
        for start in range(0, len(pending), cfg.batch_size):
            pick = pending[start:start + cfg.batch_size]
            seeds = [("mlp_in", int(active.layer[c]), int(active.pos[c]), feat_vec[c]) for c in pick.tolist()]
            R[n_rows:n_rows + len(pick)] = comp.rows(seeds)
            rc[n_rows:n_rows + len(pick)] = pick
            done[pick] = True
            n_rows += len(pick)
            bar.update(len(pick))
    bar.close()
    live = tuple(k for k, on in (("norms", cfg.live_norms), ("attention", cfg.live_attention)) if on)
    return _assemble(model, state, active, R, rc, logit_ids, logit_probs, done, rm, live)


def _assemble(model: HookedModel, state: FrozenState, active: _Active, R: Tensor, rc: Tensor, logit_ids: Tensor,
              logit_probs: Tensor, done: Tensor, rm: ReplacementModel,
              live: tuple[str, ...] = ()) -> AttributionGraph:
    """Square adjacency over [selected features, errors, tokens, logits]; rows are targets, columns sources."""
    n_act, T, L = len(active.value), state.n_pos, rm.n_layers
    sel = done.nonzero(as_tuple=True)[0]  # ordered by (layer, pos, idx)
    n_sel, n_log = len(sel), len(logit_ids)
    n = n_sel + L * T + T + n_log
    keep_cols = torch.cat([sel, torch.arange(n_act, n_act + L * T + T)])
    adj = torch.zeros(n, n)
    new_index = torch.full((n_act,), -1, dtype=torch.long)
    new_index[sel] = torch.arange(n_sel)
    feat_rows = rc >= 0
    adj[new_index[rc[feat_rows]], :n - n_log] = R[feat_rows][:, keep_cols]
    adj[n - n_log:, :n - n_log] = R[~feat_rows][:, keep_cols]
    pre = torch.zeros(n_sel)
    for l in rm.tc.layers:
        m = active.layer[sel] == l
        if m.any():
            p = rm.tc.pre_acts(l, state.mlp_in[l]).float()  # (T, S)
            pre[m] = p[active.pos[sel][m], active.idx[sel][m]]
    logits_last = state.logits[-1].float()
    return AttributionGraph(
        prompt_tokens=state.tokens[0].cpu(),
        token_strs=[model.to_string([int(t)]) if model.tokenizer is not None else str(int(t))
                    for t in state.tokens[0]],
        features=torch.stack([active.layer[sel], active.pos[sel], active.idx[sel]], 1),
        activations=active.value[sel],
        pre_activations=pre,
        logit_tokens=logit_ids,
        logit_token_strs=[model.to_string([int(t)]) if model.tokenizer is not None else str(int(t))
                          for t in logit_ids],
        logit_probs=logit_probs.float(),
        logit_values=(logits_last[logit_ids] - logits_last.mean()),
        n_layers=L, adjacency=adj, model_name=model.cfg.name, live=live)


def feature_node_index(graph: AttributionGraph, layer: int, pos: int, idx: int) -> int:
    """Index of feature node (layer, pos, idx) in ``graph`` (ValueError if not in it)."""
    hit = ((graph.features[:, 0] == layer) & (graph.features[:, 1] == pos) & (graph.features[:, 2] == idx))
    found = hit.nonzero(as_tuple=True)[0]
    if len(found) == 0:
        raise ValueError(f"feature (layer {layer}, pos {pos}, index {idx}) is not a node of this graph")
    return int(found[0])


__all__ = ["AttributionConfig", "active_features", "attribute", "feature_node_index", "logit_targets"]
