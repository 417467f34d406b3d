"""Feature statistics in one streaming pass over a corpus.

For every feature of a :class:`~mechscope.features.source.FeatureSource` (or any ``(B, T, S)`` feature tensors fed
to :class:`StatsAccumulator` by hand):

- activation frequency (share of tokens with activation > ``min_activation``), max, mean (over all tokens) and
  mean over active tokens;
- the ``top_k`` sequences with the highest activation, each kept as a token window around its maximum with the
  feature's per-token activations;
- a uniform reservoir of activating sequences (random-key top-k, i.e. reservoir sampling done in bulk), from which
  :meth:`FeatureStats.quantile_examples` picks examples per activation quantile of the final maximum;
- a histogram of non-zero activations on fixed log10 bins (the scale is not known before the pass);
- co-occurrence counts of a bounded set of features (tokens where both are active).

Every update is a handful of batched tensor operations over ``(B, T, S)``: no Python loop per feature or token.
Memory is bounded by ``d_sae * (top_k + reservoir) * window`` whatever the corpus length.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..validation import check_finite_fields
from .source import FeatureError, FeatureSource, token_batches

log = logging.getLogger(__name__)


@dataclass
class StatsConfig:
    """What one statistics pass collects."""

    top_k: int = 20
    """Top-activating sequences kept per feature."""
    reservoir: int = 40
    """Uniformly sampled activating sequences kept per feature (source of the quantile examples)."""
    n_quantiles: int = 5
    """Activation quantile bins (of the feature's max) the sampled examples are grouped into."""
    context_left: int = 24
    """Tokens kept before an example's maximum."""
    context_right: int = 8
    """Tokens kept after an example's maximum."""
    hist_bins: int = 48
    """Histogram bins of non-zero activations, equally spaced in log10 between ``hist_log10_range``."""
    hist_log10_range: tuple[float, float] = (-3.0, 3.0)
    """log10 of the histogram's lowest and highest edges (values outside land in the end bins)."""
    cooccurrence: Sequence[int] | None = None
    """Features whose pairwise co-occurrence is counted (bounded: at most 1024); None counts none."""
    min_activation: float = 0.0
    """A feature counts as active on a token when its activation exceeds this."""
    skip_first: bool = True
    """Leave each row's first position and any BOS token out of every statistic: BOS, or the attention-sink
    token a model puts at position 0 without one, has outlier activations."""
    seed: int = 0
    """Seed of the reservoir sampling."""

    def __post_init__(self) -> None:
        try:
            check_finite_fields(self)
        except ValueError as e:
            raise FeatureError(str(e)) from None
        for name in ("top_k", "reservoir", "n_quantiles", "hist_bins"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise FeatureError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.context_left < 0 or self.context_right < 0:
            raise FeatureError("context_left and context_right must be >= 0")
        lo, hi = self.hist_log10_range
        if not lo < hi:
            raise FeatureError(f"hist_log10_range must be increasing, got {self.hist_log10_range}")
        if self.cooccurrence is not None and len(self.cooccurrence) > 1024:
            raise FeatureError(f"co-occurrence is bounded to 1024 features, got {len(self.cooccurrence)}")

    @property
    def window(self) -> int:
        return self.context_left + 1 + self.context_right


@dataclass
class Example:
    """One context of a feature: a token window and the feature's activation on each token."""

    feature: int
    activation: float
    """The maximum activation in the window (at ``position``)."""
    tokens: list[int]
    acts: list[float]
    position: int
    """Index of the maximum inside ``tokens``."""
    sequence: int
    """Index of the source sequence in the corpus pass (row order)."""
    str_tokens: list[str] | None = None

    def text(self) -> str:
        return "".join(self.str_tokens) if self.str_tokens is not None else " ".join(map(str, self.tokens))


@dataclass
class FeatureStats:
    """Results of a statistics pass; tensors are indexed by feature along dim 0."""

    config: StatsConfig
    n_tokens: int
    n_sequences: int
    active_count: Int[Tensor, " d_sae"]
    act_sum: Float[Tensor, " d_sae"]
    max_act: Float[Tensor, " d_sae"]
    hist: Int[Tensor, "d_sae bins"]
    hist_edges: Float[Tensor, " bins_plus_1"]
    top_val: Float[Tensor, "d_sae k"]
    top_seq: Int[Tensor, "d_sae k"]
    top_tok: Int[Tensor, "d_sae k w"]
    top_act: Float[Tensor, "d_sae k w"]
    res_val: Float[Tensor, "d_sae r"]
    res_seq: Int[Tensor, "d_sae r"]
    res_tok: Int[Tensor, "d_sae r w"]
    res_act: Float[Tensor, "d_sae r w"]
    cooc_features: list[int] = field(default_factory=list)
    cooc_counts: Int[Tensor, "c c"] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form provenance (model, hook points, dictionary) recorded by :func:`feature_stats`."""
    decode_token: Any = None
    """``id -> str`` used to fill :attr:`Example.str_tokens` (a tokenizer's decode), if known."""

    @property
    def d_sae(self) -> int:
        return int(self.max_act.shape[0])

    @property
    def frequency(self) -> Float[Tensor, " d_sae"]:
        return self.active_count.double().div(max(self.n_tokens, 1)).float()

    @property
    def mean_act(self) -> Float[Tensor, " d_sae"]:
        """Mean activation over all tokens."""
        return (self.act_sum / max(self.n_tokens, 1)).float()

    @property
    def mean_active(self) -> Float[Tensor, " d_sae"]:
        """Mean activation over the tokens where the feature is active."""
        return (self.act_sum / self.active_count.clamp_min(1)).float()

    def view(self, top: int = 20):
        """Interactive view (:mod:`mechscope.display`): totals, latents per log10 firing-frequency bin (bars, hover
        for the count) and the most frequent features with their activations; ``db.card(f)`` shows one feature."""
        from .. import display

        title = f"feature statistics ({self.d_sae} features, {self.n_tokens} tokens)"
        if self.n_tokens == 0 or self.d_sae == 0:
            return display.empty("feature statistics", "no token was processed" if self.d_sae else "no features")
        freq = self.frequency
        dead = int((self.active_count == 0).sum())
        live = freq[freq > 0].log10()
        edges = list(range(-8, 1))
        counts = [int(((live >= a) & (live < b)).sum()) for a, b in zip(edges, edges[1:])]
        counts[-1] += int((live >= edges[-1]).sum())  # frequency 1: every token
        hist = display.bar_chart(["never", *(f"1e{a}..1e{b}" for a, b in zip(edges, edges[1:]))], [dead, *counts],
                                 value_name="features", title="features by log10 firing frequency")
        order = freq.argsort(descending=True)[:top].tolist()
        rows = [[f, float(freq[f]), float(self.max_act[f]), float(self.mean_active[f]), int(self.active_count[f])]
                for f in order if self.active_count[f] > 0]
        table = (display.table(["feature", "frequency", "max activation", "mean (active)", "active tokens"], rows,
                               title=f"most frequent features (top {len(rows)})") if rows else
                 display.empty("features", "no feature fired on these tokens"))
        summary: list[tuple[str, Any]] = [("tokens", self.n_tokens), ("sequences", self.n_sequences),
                                          ("features", self.d_sae), ("never fired", dead)]
        summary += [(k, v) for k, v in self.meta.items() if isinstance(v, (str, int, float))][:6]
        return display.panel(title, [hist, table], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()

    def check(self, feature: int) -> int:
        if not 0 <= int(feature) < self.d_sae:
            raise FeatureError(f"feature {int(feature)} is out of range: these statistics cover {self.d_sae} "
                               f"features (valid indices 0..{self.d_sae - 1})")
        return int(feature)

    def _example(self, f: int, val: Tensor, seq: Tensor, tok: Tensor, act: Tensor) -> Example:
        keep = tok >= 0
        start = int((~keep[: self.config.context_left]).sum())
        ids = tok[keep].tolist()
        strs = [self.decode_token([i]) for i in ids] if self.decode_token is not None else None
        return Example(f, float(val), ids, act[keep].tolist(), self.config.context_left - start, int(seq), strs)

    def top_examples(self, feature: int, k: int | None = None) -> list[Example]:
        """The highest-activating sequences of ``feature``, best first."""
        f = self.check(feature)
        out = [self._example(f, self.top_val[f, j], self.top_seq[f, j], self.top_tok[f, j], self.top_act[f, j])
               for j in range(self.top_val.shape[1]) if torch.isfinite(self.top_val[f, j])]
        return out[:k] if k is not None else out

    def sampled_examples(self, feature: int) -> list[Example]:
        """The reservoir: activating sequences sampled uniformly over the corpus."""
        f = self.check(feature)
        return [self._example(f, self.res_val[f, j], self.res_seq[f, j], self.res_tok[f, j], self.res_act[f, j])
                for j in range(self.res_val.shape[1]) if torch.isfinite(self.res_val[f, j])]

    def quantile_examples(self, feature: int, per_quantile: int = 3) -> list[list[Example]]:
        """Sampled examples grouped by activation quantile bin of the max (lowest bin first)."""
        f = self.check(feature)
        q = self.config.n_quantiles
        bins: list[list[Example]] = [[] for _ in range(q)]
        top = float(self.max_act[f])
        for ex in sorted(self.sampled_examples(f), key=lambda e: e.activation):
            i = min(int(ex.activation / top * q), q - 1) if top > 0 else 0
            if len(bins[i]) < per_quantile:
                bins[i].append(ex)
        return bins

    def cooccurrence(self) -> tuple[list[int], Float[Tensor, "c c"]]:
        """``(features, jaccard)``: |A and B| / |A or B| over tokens, for the tracked features."""
        if self.cooc_counts is None:
            raise FeatureError("no co-occurrence was collected: set StatsConfig.cooccurrence to a list of features")
        c = self.cooc_counts.double()
        diag = c.diagonal()
        union = diag[:, None] + diag[None, :] - c
        return self.cooc_features, (c / union.clamp_min(1)).float()


class StatsAccumulator:
    """Streaming state of a statistics pass; feed ``update`` with ``(B, T, S)`` feature activations."""

    def __init__(self, d_sae: int, config: StatsConfig | None = None, device: str | torch.device = "cpu"):
        self.cfg = cfg = config or StatsConfig()
        self.d_sae = d_sae
        s, k, r, w = d_sae, cfg.top_k, cfg.reservoir, cfg.window
        dev = torch.device(device)
        self.n_tokens = 0
        self.n_sequences = 0
        self.active_count = torch.zeros(s, dtype=torch.long, device=dev)
        self.act_sum = torch.zeros(s, dtype=torch.float64, device=dev)
        self.max_act = torch.zeros(s, device=dev)
        self.hist = torch.zeros(s * cfg.hist_bins, dtype=torch.long, device=dev)
        lo, hi = cfg.hist_log10_range
        self.hist_edges = torch.logspace(lo, hi, cfg.hist_bins + 1)
        self.top = self._slots(s, k, w, dev)
        self.res = self._slots(s, r, w, dev)
        self.res_key = torch.full((s, r), -float("inf"), device=dev)
        self.cooc = [int(i) for i in cfg.cooccurrence] if cfg.cooccurrence is not None else []
        for i in self.cooc:
            if not 0 <= i < d_sae:
                raise FeatureError(f"co-occurrence feature {i} is out of range 0..{d_sae - 1}")
        self.cooc_idx = torch.tensor(self.cooc, dtype=torch.long, device=dev)
        self.cooc_counts = torch.zeros(len(self.cooc), len(self.cooc), dtype=torch.long, device=dev)
        self.gen = torch.Generator(device=dev).manual_seed(cfg.seed)

    @staticmethod
    def _slots(s: int, n: int, w: int, dev: torch.device) -> dict[str, Tensor]:
        return {"val": torch.full((s, n), -float("inf"), device=dev),
                "seq": torch.full((s, n), -1, dtype=torch.long, device=dev),
                "tok": torch.full((s, n, w), -1, dtype=torch.long, device=dev),
                "act": torch.zeros((s, n, w), device=dev)}

    @torch.no_grad()
    def update(self, tokens: Int[Tensor, "B T"], feats: Float[Tensor, "B T S"],
               mask: Bool[Tensor, "B T"] | None = None) -> None:
        """Add one batch. ``mask`` marks real tokens (False: padding / skipped BOS)."""
        cfg = self.cfg
        b, t, s = feats.shape
        if s != self.d_sae:
            raise FeatureError(f"feature activations have width {s}, expected d_sae={self.d_sae}")
        if tokens.shape != (b, t):
            raise FeatureError(f"tokens {tuple(tokens.shape)} do not match feature activations {tuple(feats.shape)}")
        dev = self.max_act.device
        feats, tokens = feats.to(dev).float(), tokens.to(dev)
        mask = torch.ones(b, t, dtype=torch.bool, device=dev) if mask is None else mask.to(dev).bool()
        feats = feats * mask[..., None]  # (B, T, S)
        active = feats > cfg.min_activation  # (B, T, S)
        self.n_tokens += int(mask.sum())
        self.active_count += active.sum((0, 1))
        self.act_sum += feats.sum((0, 1), dtype=torch.float64)
        seq_max, seq_arg = feats.max(1)  # (B, S)
        self.max_act = torch.maximum(self.max_act, seq_max.max(0).values)
        self._histogram(feats, active)
        if len(self.cooc):
            a = active[..., self.cooc_idx].reshape(-1, len(self.cooc)).float()  # (N, C)
            self.cooc_counts += (a.T @ a).round().long()

        # Candidates: each sequence's maximum per feature. Only features where some candidate can enter the top-k
        # (beats the current k-th value) or the reservoir (its random key beats the smallest kept key) are touched.
        cand = seq_max.masked_fill(seq_max <= cfg.min_activation, -float("inf")).T  # (S, B)
        key = torch.rand((s, b), generator=self.gen, device=dev).masked_fill(~torch.isfinite(cand), -float("inf"))
        enter_top = (cand > self.top["val"][:, -1:]).any(1)  # top-k slots are sorted, so [:, -1] is the k-th
        enter_res = (key > self.res_key.min(1, keepdim=True).values).any(1)
        sub = (enter_top | enter_res).nonzero().squeeze(1)  # (S',)
        if sub.numel():
            # token windows around each sequence's maximum, for the (sequence, feature) pairs of those features
            offs = torch.arange(-cfg.context_left, cfg.context_right + 1, device=dev)  # (W,)
            pos = seq_arg[:, sub, None] + offs  # (B, S', W)
            valid = (pos >= 0) & (pos < t)
            pos_c = pos.clamp(0, t - 1)
            flat = pos_c.reshape(b, -1)
            win_tok = tokens.gather(1, flat).reshape(pos.shape)  # (B, S', W)
            valid &= mask.gather(1, flat).reshape(pos.shape)
            win_tok = win_tok.masked_fill(~valid, -1)
            win_act = feats[..., sub].transpose(1, 2).gather(2, pos_c) * valid  # (B, S', W)
            seq_ids = torch.arange(self.n_sequences, self.n_sequences + b, device=dev).expand(len(sub), b)
            new = {"val": cand[sub], "seq": seq_ids, "tok": win_tok.transpose(0, 1), "act": win_act.transpose(0, 1)}
            self._merge(self.top, new, cand[sub], rows=sub)
            self.res_key[sub] = self._merge(self.res, new, key[sub], self.res_key[sub], rows=sub)
        self.n_sequences += b

    def _histogram(self, feats: Tensor, active: Tensor) -> None:
        cfg = self.cfg
        idx = active.nonzero()  # (N_active, 3)
        if idx.numel() == 0:
            return
        vals = feats[idx[:, 0], idx[:, 1], idx[:, 2]].clamp_min(1e-30).log10()
        lo, hi = cfg.hist_log10_range
        bins = ((vals - lo) / (hi - lo) * cfg.hist_bins).floor().long().clamp(0, cfg.hist_bins - 1)
        self.hist += torch.bincount(idx[:, 2] * cfg.hist_bins + bins, minlength=self.hist.numel())

    @staticmethod
    def _merge(slots: dict[str, Tensor], new: dict[str, Tensor], score: Tensor, old_score: Tensor | None = None,
               rows: Tensor | None = None) -> Tensor:
        """Keep, for each feature in ``rows``, the slots with the highest ``score`` among its old ones and ``new``
        (whose rows are already restricted to ``rows``); returns the kept scores, best first."""
        old = {k: v[rows] for k, v in slots.items()} if rows is not None else slots
        base = old["val"] if old_score is None else old_score
        n = base.shape[1]
        best, idx = torch.cat([base, score], 1).topk(n, dim=1)  # (S', n)
        for key in slots:
            both = torch.cat([old[key], new[key]], 1)
            if both.ndim == 3:
                kept = both.gather(1, idx[..., None].expand(-1, -1, both.shape[2]))
            else:
                kept = both.gather(1, idx)
            if rows is None:
                slots[key] = kept
            else:
                slots[key][rows] = kept
        return best

    def finish(self, meta: dict[str, Any] | None = None, decode_token: Any = None) -> FeatureStats:
        if self.n_tokens == 0:
            raise FeatureError("the corpus has no tokens to compute statistics on (all positions were masked)")
        t, r = self.top, self.res
        return FeatureStats(
            self.cfg, self.n_tokens, self.n_sequences, self.active_count.cpu(), self.act_sum.cpu(),
            self.max_act.cpu(), self.hist.reshape(self.d_sae, -1).cpu(), self.hist_edges,
            t["val"].cpu(), t["seq"].cpu(), t["tok"].cpu(), t["act"].cpu(),
            r["val"].cpu(), r["seq"].cpu(), r["tok"].cpu(), r["act"].cpu(),
            self.cooc, self.cooc_counts.cpu() if self.cooc else None, meta or {}, decode_token)


def feature_stats(model: Any, source: FeatureSource | Any, corpus: Iterable[Any], config: StatsConfig | None = None,
                  *, batch_size: int = 8, max_length: int = 128, max_tokens: int | None = None,
                  progress: bool = False) -> FeatureStats:
    """One streaming pass of ``corpus`` (texts, token ids or Tokens) through ``model`` and ``source``.

    ``source`` is a :class:`FeatureSource` or a dictionary (turned into one and checked against ``model``).
    """
    if not isinstance(source, FeatureSource):
        source = FeatureSource.from_dictionary(source, model)
    config = config or StatsConfig()
    acc = StatsAccumulator(source.d_sae, config)
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    bar = tqdm(desc="feature stats", unit="tok", disable=not progress, total=max_tokens)
    for tokens in token_batches(model, corpus, batch_size, max_length, max_tokens):
        _, cache = model.run_with_cache(tokens, names=source.hook_names)
        acts = [cache[n] for n in source.hook_names]
        x = acts[0] if len(acts) == 1 else torch.stack(acts, dim=-2)  # (B, T, [L,] D)
        feats = source(x)  # (B, T, S)
        mask = tokens.attention_mask.bool()
        if config.skip_first:
            mask[:, 0] = False
            if bos is not None:
                mask &= tokens.input_ids != bos
        acc.update(tokens.input_ids, feats, mask)
        bar.update(int(tokens.attention_mask.sum()))
    bar.close()
    meta = {"model": model.cfg.name, "hook_names": source.hook_names, "d_sae": source.d_sae,
            "n_tokens": acc.n_tokens}
    decode = (lambda ids: model.tokenizer.decode(ids)) if model.tokenizer is not None else None
    log.info("feature stats: %d tokens, %d sequences, %d features", acc.n_tokens, acc.n_sequences, source.d_sae)
    return acc.finish(meta, decode)
