"""Shared base class of every sparse dictionary (SAE, transcoder, crosscoder, cross-layer transcoder).

A dictionary maps activations ``x`` read at one hook point to latents ``f = activate(pre_acts(x))`` and back to a
reconstruction ``decode(f)`` of the same (autoencoder) or another (transcoder) hook point::

    pre = (x * norm_scale_in - b_dec?) @ W_enc + b_enc            # (..., d_sae)
    f   = activate(pre)                                            # architecture-specific sparsity
    out = ((f * feature_scale) @ W_dec + b_dec + x_n @ W_skip.T) / norm_scale_out

Weights follow the SAELens orientation: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``, ``b_enc [d_sae]``,
``b_dec [d_out]``, ``W_skip [d_out, d_in]``. The optional buffers ``norm_scale_in`` / ``norm_scale_out``
(activation normalisation to a fixed norm) and ``feature_scale`` (per-feature rescaling that undoes L1 shrinkage)
are part of the model and of its saved file; ``fold_activation_norm`` / ``fold_feature_scale`` fold them into the
weights (same function, plain SAELens layout).

Subclasses define ``activate`` (and, where the architecture has them, extra parameters and loss terms).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..validation import check_finite_fields
from .errors import DictionaryConfigError, DictionaryShapeError
from .hooknames import to_canonical
from .scale import ScaleMixin

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
EXTRAS: tuple[str, ...] = ("norm_scale_in", "norm_scale_out", "feature_scale")

_saver: Callable[..., Path] | None = None


def set_saver(fn: Callable[..., Path]) -> None:
    """Install ``Dictionary.save``'s implementation: :func:`mechscope.dictionaries.io.save` calls this when
    imported (io imports this module, so this module does not import io)."""
    global _saver
    _saver = fn


def row_mean(row_err: Tensor, row_weight: Tensor | None = None) -> Tensor:
    """Mean of per-row losses ``(N,)``, each weighted by ``row_weight`` when given (``LoopConfig.row_norm_cap``)."""
    return (row_err if row_weight is None else row_weight * row_err).mean()


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the spelling used in ``cfg.json``)."""
    return str(dtype).removeprefix("torch.")


@dataclass
class DictionaryConfig:
    """Widths, hook points and input handling shared by every architecture."""

    d_in: int
    """Width of the activations read (last dimension of the input hook point)."""
    d_sae: int
    """Number of latents (features)."""
    d_out: int | None = None
    """Width of the activations written; None means ``d_in``. Only transcoders may differ from ``d_in``."""
    hook_name: str | None = None
    """Canonical hook point read (``blocks.6.resid_post``); TransformerLens names are converted."""
    hook_name_out: str | None = None
    """Hook point written by a transcoder (``blocks.6.mlp_out``); None for autoencoders (writes ``hook_name``)."""
    model_name: str | None = None
    """Name of the model the dictionary was trained on, if known."""
    dtype: str = "float32"
    """Parameter dtype: one of float32, float64, float16, bfloat16."""
    apply_b_dec_to_input: bool = True
    """Subtract ``b_dec`` from the input before encoding (autoencoders only)."""
    transcoder: bool = False
    """True when the dictionary reconstructs another hook point than the one it reads."""
    skip_connection: bool = False
    """Add a linear skip path ``x @ W_skip.T`` to the output."""

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise DictionaryConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.d_out is None:
            self.d_out = self.d_in
        if not isinstance(self.d_out, int) or self.d_out <= 0:
            raise DictionaryConfigError(f"d_out must be a positive integer, got {self.d_out!r}")
        if self.dtype.removeprefix("torch.") not in DTYPES:
            raise DictionaryConfigError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        self.dtype = self.dtype.removeprefix("torch.")
        if self.transcoder and self.apply_b_dec_to_input:
            raise DictionaryConfigError("a transcoder cannot apply b_dec (an output-side bias) to its input")
        if not self.transcoder and self.d_out != self.d_in:
            raise DictionaryConfigError(
                f"an autoencoder reconstructs its input: d_out ({self.d_out}) must equal d_in ({self.d_in}); "
                "use a transcoder to write another width"
            )
        self.hook_name = to_canonical(self.hook_name)
        self.hook_name_out = to_canonical(self.hook_name_out)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass
class DictionaryOptions:
    """Architecture-specific options. Each architecture subclasses this with its own documented fields."""

    def __post_init__(self) -> None:
        pass


class DictionaryOutput(NamedTuple):
    """What ``dictionary(x)`` returns."""

    reconstruction: Tensor
    """Reconstruction of the target hook point, shape ``(..., d_out)`` (crosscoders: ``(..., n_layers, d_in)``)."""
    feature_acts: Tensor
    """Latent activations after the sparsity nonlinearity, shape ``(..., d_sae)``; zero where inactive."""
    pre_acts: Tensor
    """Latent pre-activations before the nonlinearity, shape ``(..., d_sae)`` (Gated: the magnitude path)."""


class Dictionary(ScaleMixin, nn.Module):
    """Base class: linear encoder, architecture-specific activation, linear decoder. See the module docstring."""

    architecture: ClassVar[str] = ""
    """Registry name (``relu``, ``topk``, ...)."""
    sae_lens_name: ClassVar[str] = ""
    """SAELens ``architecture`` of the autoencoder form (``standard``, ``topk``, ``jumprelu``, ``gated``)."""
    Options: ClassVar[type[DictionaryOptions]] = DictionaryOptions
    config_defaults: ClassVar[dict[str, object]] = {}
    """Config values :func:`create` uses unless given (CLTs are transcoders, for instance)."""

    def __init__(self, cfg: DictionaryConfig, options: DictionaryOptions | None = None):
        super().__init__()
        options = self.Options() if options is None else options
        if not isinstance(options, self.Options):
            raise DictionaryConfigError(
                f"{type(self).__name__} takes {self.Options.__name__}, got {type(options).__name__}"
            )
        try:
            check_finite_fields(options)
        except ValueError as e:
            raise DictionaryConfigError(str(e)) from None
        self.cfg = cfg
        self.options = options
        self.check_config()
        for name, shape in self.param_shapes().items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=cfg.torch_dtype)))
        for name in EXTRAS:
            self.register_buffer(name, None)
        self.reset_parameters()

    # ------------------------------------------------------------------ shapes and metadata
    def check_config(self) -> None:
        """Raise :class:`DictionaryConfigError` when the config does not suit this architecture."""

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def d_out(self) -> int:
        return int(self.cfg.d_out)

    @property
    def hook_name(self) -> str | None:
        return self.cfg.hook_name

    @property
    def hook_name_out(self) -> str | None:
        """The hook point written: ``hook_name_out`` for transcoders, ``hook_name`` for autoencoders."""
        return self.cfg.hook_name_out if self.cfg.transcoder else self.cfg.hook_name

    @property
    def model_name(self) -> str | None:
        return self.cfg.model_name

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    def input_shape(self) -> tuple[int, ...]:
        """Trailing shape of one input row."""
        return (self.cfg.d_in,)

    def output_shape(self) -> tuple[int, ...]:
        """Trailing shape of one reconstruction row."""
        return (self.d_out,)

    def latent_shape(self) -> tuple[int, ...]:
        """Trailing shape of one row of latents."""
        return (self.cfg.d_sae,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter (the saved keys, before any renaming in ``saved_tensors``)."""
        c = self.cfg
        shapes = {"W_enc": (c.d_in, c.d_sae), "b_enc": (c.d_sae,), "W_dec": (c.d_sae, self.d_out),
                  "b_dec": (self.d_out,)}
        if c.skip_connection:
            shapes["W_skip"] = (self.d_out, c.d_in)
        return shapes

    def extra_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the optional buffers (activation normalisation, feature scale)."""
        return {"norm_scale_in": self.input_shape(), "norm_scale_out": self.output_shape(),
                "feature_scale": self.latent_shape()}

    def sae_lens_architecture(self) -> str:
        """The ``architecture`` field SAELens uses for this dictionary (``jumprelu_skip_transcoder`` ...)."""
        if not self.cfg.transcoder:
            return self.sae_lens_name
        prefix = "" if self.sae_lens_name == "standard" else f"{self.sae_lens_name}_"
        return prefix + ("skip_transcoder" if self.cfg.skip_connection else "transcoder")

    def sae_lens_fields(self) -> dict[str, object]:
        """Architecture-specific top-level ``cfg.json`` fields that SAELens reads (``k``, ``d_out`` ...)."""
        return {"d_out": self.d_out} if self.cfg.transcoder else {}

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random unit-norm decoder rows, encoder = decoder transpose where shapes allow, zero biases."""
        for p in self.parameters():
            p.zero_()
        w_dec = torch.randn(self.W_dec.shape, dtype=torch.float32)
        w_dec /= w_dec.flatten(1).norm(dim=1).clamp_min(1e-8).reshape(-1, *[1] * (w_dec.dim() - 1))
        self.W_dec.copy_(w_dec)
        if self.W_dec.dim() == 2 and self.W_enc.shape == self.W_dec.T.shape:
            self.W_enc.copy_(w_dec.T)
        else:
            self.W_enc.copy_(torch.randn(self.W_enc.shape) / self.cfg.d_in**0.5)

    # ------------------------------------------------------------------ encoding
    def check_input(self, x: object) -> None:
        """:class:`DictionaryShapeError` unless ``x`` is a floating tensor of shape ``(..., *input_shape())``."""
        want = tuple(self.input_shape())
        if not isinstance(x, Tensor):
            raise DictionaryShapeError(f"{self.architecture} dictionary encodes tensors of shape (..., "
                                       f"{', '.join(map(str, want))}), got {type(x).__name__}")
        if x.dim() < len(want) or tuple(x.shape[x.dim() - len(want):]) != want:
            raise DictionaryShapeError(f"{self.architecture} dictionary reads inputs of shape (..., "
                                       f"{', '.join(map(str, want))}) (d_in={self.cfg.d_in}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise DictionaryShapeError(f"{self.architecture} dictionary reads floating-point activations, got "
                                       f"{x.dtype}")

    def _scale_in(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = x.to(self.dtype)
        return x * self.norm_scale_in if self.norm_scale_in is not None else x

    def _center(self, x: Tensor) -> Tensor:
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Latent pre-activations ``(x_n - b_dec?) @ W_enc + b_enc``."""
        xs = self._scale_in(x)
        if self.cfg.apply_b_dec_to_input and self.b_dec.requires_grad and torch.is_grad_enabled():
            # Training: (x - b_dec) @ W_enc as x @ W_enc - b_dec @ W_enc, the same value, but b_dec's gradient is
            # then a vector-matrix product instead of a (rows, d_sae) x (d_sae, d_in) matmul (a sixth of a ReLU
            # SAE's step on CPU).
            return xs @ self.W_enc - self.b_dec @ self.W_enc + self.b_enc  # (..., S)
        return self._center(xs) @ self.W_enc + self.b_enc  # (..., S)

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """The architecture's sparsity nonlinearity."""
        raise NotImplementedError

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        """``(feature_acts, pre_acts)`` for input ``x``."""
        pre = self.pre_acts(x)
        return self.activate(pre), pre

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Feature activations for input ``x`` (any leading dims)."""
        return self.encode_with_pre(x)[0]

    # ------------------------------------------------------------------ decoding
    def decode(self, feature_acts: Float[Tensor, "... d_sae"],
               x: Float[Tensor, "... d_in"] | None = None) -> Float[Tensor, "... d_out"]:
        """Reconstruction from feature activations; ``x`` (the input) is needed only with a skip connection."""
        f = feature_acts.to(self.dtype)
        if self.feature_scale is not None:
            f = f * self.feature_scale
        return self._finish_decode(f @ self.W_dec + self.b_dec, x)  # (..., D_out)

    def _finish_decode(self, out: Tensor, x: Tensor | None) -> Tensor:
        if self.cfg.skip_connection:
            if x is None:
                raise DictionaryConfigError("this dictionary has a skip connection: call decode(f, x) with its input")
            out = out + self._scale_in(x) @ self.W_skip.T
        return out / self.norm_scale_out if self.norm_scale_out is not None else out

    def forward(self, x: Float[Tensor, "... d_in"]) -> DictionaryOutput:
        """Encode and decode ``x``; returns :class:`DictionaryOutput`."""
        acts, pre = self.encode_with_pre(x)
        return DictionaryOutput(self.decode(acts, x), acts, pre)

    # ------------------------------------------------------------------ losses (used by a trainer)
    def loss_terms(self, x: Tensor, out: DictionaryOutput | None = None, *, target: Tensor | None = None,
                   dead_mask: Tensor | None = None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        """Named scalar loss terms for one batch; a trainer weights and sums the ones it uses.

        Always: ``mse`` (squared error summed over features, mean over rows), ``fvu`` (fraction of variance
        unexplained) and ``l0`` (mean active latents, detached). Architectures add their sparsity terms (``l1``,
        ``l0_ste``, ``auxk``, ``aux_recon`` ...). ``target`` is required for transcoders; ``dead_mask`` (bool,
        ``(d_sae,)``) enables dead-latent auxiliary losses. ``row_weight`` (``(N,)``) weights each row's squared
        error in ``mse`` and in auxiliary reconstruction terms (``fvu`` stays unweighted, for monitoring).
        """
        out = self(x) if out is None else out
        if target is None:
            if self.cfg.transcoder:
                raise DictionaryConfigError("a transcoder reconstructs another hook point: pass target=")
            target = x
        nd = len(self.output_shape())
        target = target.to(out.reconstruction.dtype)
        dims = tuple(range(-nd, 0))
        row_err = (out.reconstruction - target).pow(2).sum(dims)  # (N,)
        mse = row_err.mean()
        rows = target.reshape(-1, *self.output_shape())  # (N, *out)
        variance = (rows - rows.mean(0)).pow(2).sum(dims).mean()
        nl = len(self.latent_shape())
        l0 = (out.feature_acts != 0).sum(tuple(range(-nl, 0))).float().mean().detach()
        terms = {"mse": row_mean(row_err, row_weight),
                 "fvu": mse / variance.clamp_min(1e-12), "l0": l0}
        terms.update(self.sparsity_terms(x, out, target=target, dead_mask=dead_mask, row_weight=row_weight))
        return terms

    def sparsity_terms(self, x: Tensor, out: DictionaryOutput, *, target: Tensor,
                       dead_mask: Tensor | None, row_weight: Tensor | None = None) -> dict[str, Tensor]:
        """Architecture-specific loss terms (none in the base class). ``row_weight`` (``(N,)``, see
        :meth:`loss_terms`) weights auxiliary *reconstruction* terms (AuxK, the gated aux_recon); sparsity penalties
        are left unweighted."""
        return {}

    # ------------------------------------------------------------------ decoder norms
    def decoder_norms(self) -> Float[Tensor, " d_sae"]:
        """L2 norm of each latent's decoder direction."""
        return self.W_dec.flatten(1).norm(dim=1)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale decoder rows to unit norm (in place)."""
        norms = self.decoder_norms().clamp_min(1e-8)
        self.W_dec.div_(norms.reshape(-1, *[1] * (self.W_dec.dim() - 1)))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Project out the component of ``W_dec.grad`` parallel to each (unit-norm) decoder row."""
        if self.W_dec.grad is None:
            return
        w, g = self.W_dec.flatten(1), self.W_dec.grad.flatten(1)  # (S, D)
        w_unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-8)
        g -= (g * w_unit).sum(1, keepdim=True) * w_unit

    # ------------------------------------------------------------------ checks
    def check_compatible(self, d_model_or_shape: int | tuple[int, ...] | torch.Size,
                         hook_name: str | None = None) -> None:
        """Raise :class:`DictionaryShapeError` when activations of this width / hook cannot feed the dictionary."""
        width = d_model_or_shape if isinstance(d_model_or_shape, int) else int(d_model_or_shape[-1])
        if width != self.cfg.d_in:
            where = f" at {hook_name!r}" if hook_name else ""
            raise DictionaryShapeError(
                f"{self.architecture} dictionary for {self.cfg.model_name or 'an unnamed model'} "
                f"({self.cfg.hook_name or 'no hook recorded'}) reads width d_in={self.cfg.d_in}, but the "
                f"activations{where} have width {width}: it was trained for another model or hook point"
            )
        if hook_name is not None and self.cfg.hook_name is not None:
            if to_canonical(hook_name) != self.cfg.hook_name:
                raise DictionaryShapeError(
                    f"dictionary was trained on {self.cfg.hook_name!r}, not {hook_name!r}; pass the matching "
                    "hook name (or set dictionary.cfg.hook_name to use it elsewhere on purpose)"
                )

    # ------------------------------------------------------------------ saving (file layout in io.py)
    def saved_tensors(self) -> dict[str, Tensor]:
        """Tensors written to ``sae_weights.safetensors`` (SAELens key names)."""
        out = {name: p.detach() for name, p in self.named_parameters()}
        out.update({name: getattr(self, name).detach() for name in EXTRAS if getattr(self, name) is not None})
        return out

    def expected_saved_shapes(self, extras: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
        """Key -> shape that ``saved_tensors`` produces (used to validate files before loading)."""
        shapes = dict(self.param_shapes())
        shapes.update({k: v for k, v in self.extra_shapes().items() if k in extras})
        return shapes

    @torch.no_grad()
    def load_saved_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of :meth:`saved_tensors` (keys and shapes already validated)."""
        for name, p in self.named_parameters():
            p.copy_(tensors[name])
        for name in EXTRAS:
            if name in tensors:
                setattr(self, name, tensors[name].to(self.dtype).clone())

    def save(self, folder: str | os.PathLike[str], *, fold: bool = False) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` atomically (see :func:`mechscope.dictionaries.io.save`).

        ``fold=True`` folds normalisation and feature scale into the saved weights (a plain SAELens file).
        """
        if _saver is None:  # importing any dictionaries module runs the package __init__, which imports io
            raise RuntimeError("saving needs mechscope.dictionaries.io: import mechscope.dictionaries")
        return _saver(self, folder, fold=fold)

    def extra_repr(self) -> str:
        c = self.cfg
        hooks = c.hook_name if not c.transcoder else f"{c.hook_name} -> {c.hook_name_out}"
        return f"d_in={c.d_in}, d_sae={c.d_sae}, d_out={c.d_out}, hook={hooks}, options={self.options}"
