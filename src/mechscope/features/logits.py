"""What features write and read, from the weights alone.

- :func:`logit_effects`: the tokens a feature's decoder direction promotes and suppresses when read straight into
  the unembedding, through the final norm's gain (``final_norm.apply_linear`` with a unit scale: the direction's
  share of the logits, centred first for LayerNorm):  ``logits = (gain * d) @ W_U``.
- :func:`top_input_tokens`: the tokens that excite a feature most by de-embedding: ``W_E`` through the norm in
  front of the dictionary's hook point (the MLP-input norm for transcoders reading ``blocks.L.mlp_in``) into the
  encoder's pre-activations.
- :func:`nearest_features`: other features with the most similar decoder direction (cosine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..models import norms
from ..models.norms import NormSpec
from .source import FeatureError


@dataclass
class TokenScore:
    """A token and a score (a logit contribution, or an encoder pre-activation)."""

    token_id: int
    token: str
    value: float


@dataclass
class LogitEffects:
    """Tokens one feature pushes up and down through the direct path to the logits."""

    feature: int
    promoted: list[TokenScore]
    suppressed: list[TokenScore]

    def view(self):
        """Interactive view (:mod:`mechscope.display`): promoted and suppressed tokens as bars (hover for the
        logit contribution)."""
        from .. import display

        title = f"feature {self.feature}: logit effects"
        rows = [*self.promoted, *sorted(self.suppressed, key=lambda t: t.value, reverse=True)]
        if not rows:
            return display.empty(title, "no token scores")
        return display.bar_chart([repr(t.token) for t in rows], [t.value for t in rows],
                                 value_name="direct logit contribution", title=title)

    def _repr_html_(self) -> str:
        return self.view().html()


def decoder_directions(d: Any) -> Float[Tensor, "d_sae d_model"]:
    """One residual-stream direction per feature (flattened like ``FeatureSource.d_sae``).

    Autoencoders and transcoders: ``W_dec`` rows. Cross-layer transcoders: the sum of a feature's writes to every
    later layer. Crosscoders: the direction written to the last source.
    """
    from ..dictionaries import Crosscoder, CrossLayerTranscoder

    # Model-space write per unit of feature activation: the feature scale and the output normalisation of
    # dictionaries trained on normalised activations are applied (decode divides by norm_scale_out).
    w = d.W_dec.detach().float()
    fs = getattr(d, "feature_scale", None)
    nso = getattr(d, "norm_scale_out", None)
    if isinstance(d, CrossLayerTranscoder):  # W_dec (L, S, L_out, D)
        w = w * d.causal_mask[:, None, :, None].to(w)
        if fs is not None:
            w = w * fs.detach().float()[:, :, None, None]
        if nso is not None:
            w = w / nso.detach().float()[None, None]
        return w.sum(2).reshape(-1, w.shape[-1])  # (L * S, D)
    if fs is not None:
        w = w * fs.detach().float().reshape(-1, *[1] * (w.dim() - 1))
    if nso is not None:
        w = w / nso.detach().float()
    if isinstance(d, Crosscoder):  # W_dec (S, L, D)
        return w[:, -1, :]  # (S, D)
    return w  # (S, D)


def _check(features: Sequence[int] | None, n: int) -> list[int]:
    if features is None:
        return list(range(n))
    out = []
    for f in features:
        if not 0 <= int(f) < n:
            raise FeatureError(f"feature {int(f)} is out of range: there are {n} features (valid 0..{n - 1})")
        out.append(int(f))
    return out


def _decode(model: Any, ids: Tensor) -> list[str]:
    tok = model.tokenizer
    return [tok.decode([int(i)]) if tok is not None else str(int(i)) for i in ids]


@torch.no_grad()
def logit_effects(model: Any, dictionary: Any = None, features: Sequence[int] | None = None, k: int = 10, *,
                  directions: Float[Tensor, "n d_model"] | None = None, chunk: int = 256) -> list[LogitEffects]:
    """Top ``k`` promoted and suppressed tokens per feature (all features when ``features`` is None)."""
    dirs = decoder_directions(dictionary) if directions is None else directions.float()
    if dirs.shape[-1] != model.cfg.d_model:
        raise FeatureError(f"decoder directions have width {dirs.shape[-1]}, but logit effects need residual-stream "
                           f"directions of width d_model={model.cfg.d_model}: the dictionary writes another space")
    feats = _check(features, dirs.shape[0])
    w_u = model.W_U.detach().float()  # (D, V)
    norm = model.final_norm
    out: list[LogitEffects] = []
    for start in range(0, len(feats), chunk):
        idx = torch.tensor(feats[start:start + chunk], dtype=torch.long)
        d = dirs[idx].to(w_u.device)  # (F, D)
        logits = norm.apply_linear(d, torch.ones(d.shape[0], 1, device=d.device)) @ w_u  # (F, V)
        top_v, top_i = logits.topk(k, dim=-1)
        bot_v, bot_i = logits.topk(k, dim=-1, largest=False)
        for r, f in enumerate(idx.tolist()):
            up = [TokenScore(int(i), s, float(v)) for i, s, v in zip(top_i[r], _decode(model, top_i[r]), top_v[r])]
            down = [TokenScore(int(i), s, float(v)) for i, s, v in zip(bot_i[r], _decode(model, bot_i[r]), bot_v[r])]
            out.append(LogitEffects(f, up, down))
    return out


def mlp_in_norm(model: Any, layer: int) -> NormSpec:
    """The :class:`~mechscope.models.norms.NormSpec` of the norm in front of block ``layer``'s MLP
    (:func:`mechscope.models.norms.mlp_in_norm`)."""
    try:
        return norms.mlp_in_norm(model, layer)[1]
    except ValueError as e:
        raise FeatureError(f"cannot find the MLP-input norm of block {layer}: {e}") from e


@torch.no_grad()
def top_input_tokens(model: Any, dictionary: Any, features: Sequence[int] | None = None, k: int = 10,
                     hook_name: str | None = None, vocab_chunk: int = 4096) -> dict[int, list[TokenScore]]:
    """Tokens whose embedding excites each feature most (encoder pre-activation of the de-embedded token).

    Reads through the MLP-input norm for ``blocks.L.mlp_in`` (transcoders); residual-stream hook points take
    ``W_E`` as it is (the token's direct contribution to the residual).
    """
    hook = model.resolve(hook_name or dictionary.hook_name)
    if hook.kind == "mlp_in":
        norm = mlp_in_norm(model, hook.layer)
        prep = norm.__call__
    elif hook.kind in ("resid_pre", "resid_mid", "resid_post", "embed"):
        def prep(x: Tensor) -> Tensor:
            return x
    else:
        raise FeatureError(f"de-embedding needs a residual-stream or mlp_in hook point, not {hook.name!r}")
    feats = _check(features, dictionary.d_sae)
    idx = torch.tensor(feats, dtype=torch.long)
    w_e = model.W_E.detach()
    best_v = torch.full((len(feats), k), -float("inf"))
    best_i = torch.zeros((len(feats), k), dtype=torch.long)
    for start in range(0, w_e.shape[0], vocab_chunk):
        x = prep(w_e[start:start + vocab_chunk].float())  # (V_c, D)
        pre = dictionary.pre_acts(x.to(dictionary.dtype)).float()[:, idx].T.cpu()  # (F, V_c)
        ids = torch.arange(start, start + pre.shape[1]).expand_as(pre)
        v, j = torch.cat([best_v, pre], 1).topk(k, dim=1)
        best_i = torch.cat([best_i, ids], 1).gather(1, j)
        best_v = v
    return {f: [TokenScore(int(i), s, float(v)) for i, s, v in zip(best_i[r], _decode(model, best_i[r]), best_v[r])]
            for r, f in enumerate(feats)}


@torch.no_grad()
def nearest_features(dictionary: Any = None, features: Sequence[int] | None = None, k: int = 5, *,
                     directions: Float[Tensor, "n d"] | None = None, chunk: int = 1024,
                     ) -> dict[int, list[tuple[int, float]]]:
    """For each feature, the ``k`` other features with the highest decoder cosine similarity."""
    dirs = decoder_directions(dictionary) if directions is None else directions.float()
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # (S, D)
    feats = _check(features, unit.shape[0])
    k = min(k, unit.shape[0] - 1)
    out: dict[int, list[tuple[int, float]]] = {}
    for start in range(0, len(feats), chunk):
        idx = torch.tensor(feats[start:start + chunk], dtype=torch.long)
        cos = unit[idx] @ unit.T  # (F, S)
        cos[torch.arange(len(idx)), idx] = -float("inf")
        v, j = cos.topk(k, dim=-1)
        for r, f in enumerate(idx.tolist()):
            out[f] = [(int(a), float(b)) for a, b in zip(j[r], v[r])]
    return out
