"""The replacement model: the real model with its MLPs replaced by transcoders, made linear by freezing.

For one prompt, :meth:`ReplacementModel.freeze` runs the real model once and records

- every attention pattern (``blocks.L.attn.pattern``),
- the per-position scale of every normalisation layer (RMSNorm / LayerNorm, found by class name in the HF model;
  ``NormSpec`` linearises each with its frozen scale),
- the transcoder features read at every ``mlp_in`` and an error node per (layer, position):
  ``error = real mlp_out - transcoder reconstruction``.

:meth:`ReplacementModel.run` then replays the prompt through HF's own forward pass with hooks that substitute the
frozen patterns and norm scales, and replace every MLP output by ``decode(features) + error`` (the real MLP still
runs but is cut from autograd). With frozen feature activations the replacement reproduces the real logits (up to
float rounding) and is *linear* in the residual stream: attention is a fixed mixing of values, norms are fixed
diagonal maps. That linearity is what makes attribution edges exact (see :mod:`mechscope.circuits.attribution`).

``run`` also supports edits (ablate / scale / clamp features), ``propagate=True`` (features downstream of an edit
are recomputed by their encoders instead of held at their frozen values), zero "probe" tensors added to the
embedding and every MLP output whose gradients are the backward signals attribution reads, and stopping right
after the final norm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..models.hooked import HookedModel
from ..models.hooking import Hook, StopForward, catch_stop
from ..models.norms import NormSpec, norm_modules
from ..models.tokens import Inputs
from .transcoders import Transcoders, TranscoderStack

log = logging.getLogger(__name__)

FeatureEdit = Callable[[int, Tensor], Tensor]
"""``edit(layer, acts) -> acts``: change the (batch, pos, d_sae) feature activations read at ``layer``."""


@dataclass
class FrozenState:
    """What one real forward pass froze for the replacement model (batch 1)."""

    tokens: Int[Tensor, "1 pos"]
    logits: Float[Tensor, "pos vocab"]
    """Real logits."""
    embed: Float[Tensor, "pos d_model"]
    """The ``embed`` hook value (the token nodes' contribution to the residual)."""
    patterns: dict[int, Tensor]
    """Layer -> attention pattern (1, heads, pos, pos)."""
    norm_scales: dict[str, Tensor]
    """Norm module path -> per-position scale (1, pos, ..., 1)."""
    mlp_in: dict[int, Tensor]
    """Layer -> real MLP input (pos, d_model)."""
    mlp_out: dict[int, Tensor]
    """Layer -> real MLP output (pos, d_model)."""
    acts: dict[int, Tensor] = field(default_factory=dict)
    """Layer -> feature activations (pos, d_sae) for layers with features."""
    errors: dict[int, Tensor] = field(default_factory=dict)
    """Layer -> error node values (pos, d_model): real mlp_out - reconstruction (all of mlp_out without features)."""

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[1])


@dataclass
class RunOutput:
    """What :meth:`ReplacementModel.run` captured."""

    logits: Tensor | None
    """(batch, pos, vocab), or None when stopped at the final norm."""
    final_norm: Tensor
    """(batch, pos, d_model) normalised final residual (with autograd graph when grad is on)."""
    mlp_in: dict[int, Tensor]
    """Layer -> (batch, pos, d_model) MLP inputs as computed in this run."""
    acts: dict[int, Tensor]
    """Layer -> (batch, pos, d_sae) feature activations used in this run (after edits)."""
    probes: dict[str, Tensor]
    """``embed`` / ``mlp_out.L`` -> the zero leaf tensors added there (their ``.grad`` after backward)."""


class ReplacementModel:
    """A :class:`HookedModel` with MLPs replaced by transcoders and, per prompt, frozen attention and norms."""

    def __init__(self, model: HookedModel, transcoders: Transcoders | TranscoderStack):
        self.model = model
        self.tc: TranscoderStack = transcoders if isinstance(transcoders, TranscoderStack) else TranscoderStack(
            transcoders, model.cfg.n_layers)
        if model.adapter.name in ("gemma2",) and getattr(model.hf.config, "final_logit_softcapping", None):
            log.warning("final logit soft-capping is not linear: logit edges are w.r.t. the pre-cap logits")
        self.norms = norm_modules(model)
        self.specs = {name: NormSpec.from_module(m, model.adapter.norm_kind) for name, m in self.norms.items()}

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    # ------------------------------------------------------------------ freezing
    @torch.no_grad()
    def freeze(self, inputs: Inputs) -> FrozenState:
        """Run the real model once on ``inputs`` (one prompt) and record everything the replacement freezes."""
        tokens = self.model.as_tokens(inputs).input_ids
        if tokens.shape[0] != 1:
            raise ValueError(f"the replacement model works on one prompt at a time, got a batch of {tokens.shape[0]}")
        rec: dict[str, Tensor] = {}
        scales: dict[str, Tensor] = {}

        def record(act: Tensor, hook: Hook) -> None:
            rec[hook.name] = act.detach().clone()

        names = ["embed"] + [f"blocks.{l}.{k}" for l in range(self.n_layers)
                             for k in ("attn.pattern", "mlp_in", "mlp_out")]
        with ExitStack() as stack:
            for name, m in self.norms.items():
                def hook(module: nn.Module, args: tuple, output: Tensor, name: str = name) -> None:
                    scales[name] = self.specs[name].scale(args[0]).detach()
                stack.callback(m.register_forward_hook(hook).remove)
            with self.model.hooks([(n, record) for n in names]):
                logits = self.model(tokens)
        state = FrozenState(tokens=tokens, logits=logits[0].detach(), embed=rec["embed"][0],
                            patterns={l: rec[f"blocks.{l}.attn.pattern"] for l in range(self.n_layers)},
                            norm_scales=scales,
                            mlp_in={l: rec[f"blocks.{l}.mlp_in"][0] for l in range(self.n_layers)},
                            mlp_out={l: rec[f"blocks.{l}.mlp_out"][0] for l in range(self.n_layers)})
        acts: dict[int, Tensor] = {}
        for l in range(self.n_layers):
            if l in self.tc.layers:
                acts[l] = self.tc.encode(l, state.mlp_in[l]).float()  # (T, S)
            if self.tc.writes(l):
                recon = self.tc.decode(l, acts, state.mlp_in[l])  # (T, D)
                state.errors[l] = (state.mlp_out[l].float() - recon.float())
            else:
                state.errors[l] = state.mlp_out[l].float()
        state.acts = acts
        return state

    # ------------------------------------------------------------------ replaying
    @contextmanager
    def _frozen_norms(self, state: FrozenState) -> Iterator[None]:
        handles = []
        try:
            for name, m in self.norms.items():
                if name not in state.norm_scales:
                    continue

                def hook(module: nn.Module, args: tuple, output: Tensor, name: str = name) -> Tensor:
                    spec, s = self.specs[name], state.norm_scales[name]
                    return (spec.apply_linear(args[0], s) + spec.bias_term()).to(output.dtype)
                handles.append(m.register_forward_hook(hook))
            yield
        finally:
            for h in handles:
                h.remove()

    def run(self, state: FrozenState, *, batch: int = 1, edit: FeatureEdit | None = None, propagate: bool = False,
            probes: bool = False, stop_at_final_norm: bool = False, grad: bool = False,
            embed_scale: Tensor | None = None, error_scale: dict[int, Tensor] | None = None,
            freeze_attention: bool = True, freeze_norms: bool = True) -> RunOutput:
        """Replay the frozen prompt ``batch`` times through the replacement model.

        ``edit(layer, acts)`` changes the feature activations read at ``layer`` (batch, pos, d_sae) before they are
        decoded. With ``propagate=False`` features keep their frozen values (edits act as direct effects only);
        with ``propagate=True`` each layer's features are re-encoded from the MLP input of this run. ``probes``
        adds zero leaf tensors (requiring grad) to ``embed`` and every ``mlp_out``. ``embed_scale`` (pos,) or
        (batch, pos) scales the token embeddings; ``error_scale`` maps a layer to factors (pos,) or (batch, pos) of
        its error nodes.
        ``freeze_attention=False`` / ``freeze_norms=False`` let the attention patterns / normalisation scales be
        recomputed from this run's residual stream (the replacement model is then no longer linear; the error nodes
        stay frozen, so with no edit the real logits are still reproduced).
        """
        T, D = state.n_pos, self.model.cfg.d_model
        dtype = state.embed.dtype
        tokens = state.tokens.expand(batch, T)
        out = RunOutput(None, torch.empty(0), {}, {}, {})
        if probes:
            out.probes = {k: torch.zeros(batch, T, D, dtype=dtype, requires_grad=True)
                          for k in ["embed"] + [f"mlp_out.{l}" for l in range(self.n_layers)]}

        def embed(act: Tensor, hook: Hook) -> Tensor:
            if embed_scale is not None:
                act = act * embed_scale.to(act.dtype)[..., None]  # (T,) or (B, T)
            return act + out.probes["embed"].to(act.dtype) if probes else act

        def pattern(act: Tensor, hook: Hook) -> Tensor:
            return state.patterns[hook.layer].to(act.dtype).expand_as(act)

        def mlp_in(act: Tensor, hook: Hook) -> Tensor:
            out.mlp_in[hook.layer] = act
            return act.detach()  # the real MLP runs on a cut copy: no graph through it

        def mlp_out(act: Tensor, hook: Hook) -> Tensor:
            l = hook.layer
            assert l is not None
            x = out.mlp_in[l]
            if l in self.tc.layers:
                if propagate:
                    with torch.no_grad():
                        a = self.tc.encode(l, x).float()
                else:
                    a = state.acts[l].expand(batch, *state.acts[l].shape)
                out.acts[l] = edit(l, a) if edit is not None else a
            err = state.errors[l]
            if error_scale is not None and l in error_scale:
                err = err * error_scale[l].to(err.dtype)[..., None]  # (T,) or (B, T)
            new = err.to(act.dtype).expand_as(act)
            if self.tc.writes(l):
                new = new + self.tc.decode(l, out.acts, x).to(act.dtype)
            if probes:
                new = new + out.probes[f"mlp_out.{l}"].to(act.dtype)
            return new

        def final(act: Tensor, hook: Hook) -> None:
            out.final_norm = act
            if stop_at_final_norm:
                raise StopForward

        hooks = [("embed", embed), ("final_norm", final)]
        for l in range(self.n_layers):
            if freeze_attention:
                hooks.append((f"blocks.{l}.attn.pattern", pattern))
            hooks += [(f"blocks.{l}.mlp_in", mlp_in), (f"blocks.{l}.mlp_out", mlp_out)]
        norms = self._frozen_norms(state) if freeze_norms else nullcontext()
        with torch.set_grad_enabled(grad or probes), norms, self.model.hooks(hooks):
            with catch_stop():
                out.logits = self.model(tokens)
        return out

    def feature_pre_acts(self, run: RunOutput, layer: int) -> Float[Tensor, "batch pos d_sae"]:
        """Pre-activations of layer ``layer``'s features from a run's MLP input."""
        return self.tc.pre_acts(layer, run.mlp_in[layer])

    def logit_direction(self, tokens: Int[Tensor, " n"], demean: bool = True) -> Float[Tensor, "n d_model"]:
        """Unembedding columns of ``tokens`` (minus the vocabulary mean when ``demean``): logit = final_norm @ dir."""
        W_U = self.model.W_U.float()  # (D, V)
        dirs = W_U[:, tokens].T  # (n, D)
        return dirs - W_U.mean(1) if demean else dirs
