"""Cross-layer transcoder (CLT; Ameisen et al. 2025): features read at layer l write to every MLP output m >= l.

Sources are consecutive blocks ``first_layer .. first_layer + n_layers - 1``. Inputs are the MLP inputs of every
layer, outputs the MLP outputs::

    pre[..., l, :] = (x[..., l, :] * s_in[l] - b_in[l]) @ W_enc[l] + b_enc[l]       W_enc [L, d_in, d_sae]
    f = activation(pre)                                                             relu or jumprelu
    out[..., m, :] = sum_{l <= m} f[..., l, :] @ W_dec[l, :, m, :] + b_dec[m]       W_dec [L, d_sae, L, d_out]

``W_dec`` uses the SAELens ``jumprelu_clt`` layout; entries with ``l > m`` are kept at zero and masked, so the CLT
is causal and can be spliced into one forward pass (:meth:`encode_layer` at each ``mlp_in``, :meth:`decode_layer`
at each ``mlp_out``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from .base import Dictionary, DictionaryOptions, DictionaryOutput
from .errors import DictionaryConfigError, DictionaryShapeError
from .hooknames import block_hook
from .jumprelu import ThresholdMixin, jumprelu, step
from .registry import register

CLT_ACTIVATIONS = ("relu", "jumprelu")


@dataclass
class CLTOptions(DictionaryOptions):
    n_layers: int = 2
    """Number of consecutive blocks covered."""
    first_layer: int = 0
    """Model block index of source 0."""
    activation: str = "relu"
    """``relu`` (decoder-norm-weighted L1) or ``jumprelu`` (learned thresholds, straight-through L0)."""
    bandwidth: float = 0.05
    """JumpReLU straight-through bandwidth."""
    init_threshold: float = 0.01
    """JumpReLU initial threshold."""

    def __post_init__(self) -> None:
        if not isinstance(self.n_layers, int) or self.n_layers <= 0:
            raise DictionaryConfigError(f"n_layers must be a positive integer, got {self.n_layers!r}")
        if self.first_layer < 0:
            raise DictionaryConfigError(f"first_layer must be >= 0, got {self.first_layer}")
        if self.activation not in CLT_ACTIVATIONS:
            raise DictionaryConfigError(f"CLT activation must be one of {CLT_ACTIVATIONS}, got {self.activation!r}")
        if not (self.bandwidth > 0 and self.init_threshold > 0):
            raise DictionaryConfigError("bandwidth and init_threshold must be positive")


@register
class CrossLayerTranscoder(ThresholdMixin, Dictionary):
    """Causal cross-layer transcoder (see module docstring)."""

    architecture = "clt"
    sae_lens_name = "clt"
    Options = CLTOptions
    options: CLTOptions
    config_defaults = {"transcoder": True, "apply_b_dec_to_input": False}

    def __init__(self, cfg, options=None):
        super().__init__(cfg, options)
        n = self.options.n_layers
        self.register_buffer("causal_mask", torch.ones(n, n).triu().to(cfg.torch_dtype), persistent=False)

    def check_config(self) -> None:
        if not self.cfg.transcoder or self.cfg.apply_b_dec_to_input:
            raise DictionaryConfigError("a CLT is a transcoder: transcoder=True, apply_b_dec_to_input=False")
        first = self.options.first_layer
        if self.cfg.hook_name is None:
            self.cfg.hook_name = block_hook(first, "mlp_in")
            self.cfg.hook_name_out = block_hook(first, "mlp_out")

    @property
    def layers(self) -> list[int]:
        """Model block index of every source."""
        return list(range(self.options.first_layer, self.options.first_layer + self.options.n_layers))

    def input_shape(self) -> tuple[int, ...]:
        return (self.options.n_layers, self.cfg.d_in)

    def output_shape(self) -> tuple[int, ...]:
        return (self.options.n_layers, self.d_out)

    def latent_shape(self) -> tuple[int, ...]:
        return (self.options.n_layers, self.cfg.d_sae)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        n, d, s, o = self.options.n_layers, self.cfg.d_in, self.cfg.d_sae, self.d_out
        shapes = {"W_enc": (n, d, s), "b_enc": (n, s), "W_dec": (n, s, n, o), "b_dec": (n, o), "b_in": (n, d)}
        if self.cfg.skip_connection:
            shapes["W_skip"] = (n, o, d)
        if self.options.activation == "jumprelu":
            shapes["log_threshold"] = (n, s)
        return shapes

    def sae_lens_architecture(self) -> str:
        return "jumprelu_clt" if self.options.activation == "jumprelu" else "clt"

    def sae_lens_fields(self) -> dict[str, object]:
        return {"n_layers": self.options.n_layers, "d_out": self.d_out,
                "include_skip_connection": self.cfg.skip_connection}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for p in self.parameters():
            p.zero_()
        n, s = self.options.n_layers, self.cfg.d_sae
        self.W_enc.copy_(torch.randn(self.W_enc.shape) / self.cfg.d_in**0.5)
        w_dec = torch.randn(self.W_dec.shape) / (self.d_out * n) ** 0.5
        self.W_dec.copy_(w_dec * torch.ones(n, n).triu()[:, None, :, None])
        if "log_threshold" in self.param_shapes():
            self.log_threshold.fill_(math.log(self.options.init_threshold))
        del s

    def _fold_extra_input_scale(self, s_in: Tensor) -> None:
        self.b_in.div_(s_in)

    # ------------------------------------------------------------------ full (all layers at once)
    def _threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activate(self, pre: Float[Tensor, "... n_layers d_sae"]) -> Float[Tensor, "... n_layers d_sae"]:
        if self.options.activation == "jumprelu":
            return jumprelu(pre, self._threshold(), self.options.bandwidth)
        return torch.relu(pre)

    def pre_acts(self, x: Float[Tensor, "... n_layers d_in"]) -> Float[Tensor, "... n_layers d_sae"]:
        xc = self._scale_in(x) - self.b_in  # (..., L, D)
        return torch.einsum("...ld,lds->...ls", xc, self.W_enc) + self.b_enc

    def decode(self, feature_acts: Float[Tensor, "... n_layers d_sae"],
               x: Tensor | None = None) -> Float[Tensor, "... n_layers d_out"]:
        f = feature_acts.to(self.dtype)
        if self.feature_scale is not None:
            f = f * self.feature_scale
        w = self.W_dec * self.causal_mask[:, None, :, None]
        out = torch.einsum("...ls,lsmo->...mo", f, w) + self.b_dec  # (..., L, O)
        if self.cfg.skip_connection:
            if x is None:
                raise DictionaryConfigError("this CLT has a skip connection: call decode(f, x) with its input")
            out = out + torch.einsum("...ld,lod->...lo", self._scale_in(x), self.W_skip)
        return out / self.norm_scale_out if self.norm_scale_out is not None else out

    # ------------------------------------------------------------------ one layer at a time (splicing)
    def encode_layer(self, x: Float[Tensor, "... d_in"], layer: int) -> Float[Tensor, "... d_sae"]:
        """Latents of source ``layer`` (0-based source index) from that layer's MLP input."""
        x = x.to(self.dtype)
        if self.norm_scale_in is not None:
            x = x * self.norm_scale_in[layer]
        pre = (x - self.b_in[layer]) @ self.W_enc[layer] + self.b_enc[layer]  # (..., S)
        if self.options.activation == "jumprelu":
            return jumprelu(pre, self._threshold()[layer], self.options.bandwidth)
        return torch.relu(pre)

    def decode_layer(self, feature_acts: Sequence[Tensor], layer: int,
                     x: Tensor | None = None) -> Float[Tensor, "... d_out"]:
        """MLP output of source ``layer`` from the latents of sources ``0..layer`` (``feature_acts[l]``)."""
        if len(feature_acts) < layer + 1:
            raise DictionaryConfigError(f"decode_layer({layer}) needs the latents of sources 0..{layer}")
        out = self.b_dec[layer]
        for src in range(layer + 1):
            f = feature_acts[src].to(self.dtype)
            if self.feature_scale is not None:
                f = f * self.feature_scale[src]
            out = out + f @ self.W_dec[src, :, layer, :]  # (..., O)
        if self.cfg.skip_connection:
            if x is None:
                raise DictionaryConfigError("this CLT has a skip connection: pass the layer's input x")
            xs = x.to(self.dtype) * (self.norm_scale_in[layer] if self.norm_scale_in is not None else 1)
            out = out + xs @ self.W_skip[layer].T
        return out / self.norm_scale_out[layer] if self.norm_scale_out is not None else out

    # ------------------------------------------------------------------ norms and losses
    def decoder_norms(self) -> Float[Tensor, "n_layers d_sae"]:
        """Sum over written layers of each latent's decoder norm."""
        return (self.W_dec * self.causal_mask[:, None, :, None]).norm(dim=-1).sum(-1)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        norms = (self.W_dec * self.causal_mask[:, None, :, None]).flatten(2).norm(dim=-1).clamp_min(1e-8)
        self.W_dec.div_(norms[..., None, None])

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        raise NotImplementedError("CLTs weight their penalty by decoder norms; no unit-norm projection")

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        if self.options.activation == "jumprelu":
            count = step(out.pre_acts, self._threshold(), self.options.bandwidth)
            return {"l0_ste": count.sum((-2, -1)).mean()}
        return {"l1": (out.feature_acts * self.decoder_norms()).sum((-2, -1)).mean()}

    def check_compatible(self, d_model_or_shape: int | tuple[int, ...] | torch.Size,
                         hook_name: str | None = None) -> None:
        width = d_model_or_shape if isinstance(d_model_or_shape, int) else int(d_model_or_shape[-1])
        if width != self.cfg.d_in:
            raise DictionaryShapeError(f"CLT reads MLP inputs of width d_in={self.cfg.d_in}, got width {width}")
