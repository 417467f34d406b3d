"""One interface over per-layer transcoders and cross-layer transcoders (CLTs) for circuit work.

The replacement model and the attribution code need, per model layer ``l``:

- ``encode(l, mlp_in)``: feature activations of the features read at layer ``l`` (zeros where inactive);
- ``decode(l, acts, mlp_in)``: the MLP-output reconstruction at layer ``l`` from the activations of every source
  layer (a CLT sums the decoders of all sources ``<= l``), including biases and any skip connection;
- ``encoder_vectors(l, idx)``: the directions in ``mlp_in`` space whose dot product is a feature's pre-activation
  (minus its bias);
- ``decoder_vectors(l, idx)``: ``{m: (n, d_model)}``, what one unit of each feature writes to ``mlp_out`` of layer
  ``m``.

Normalisation buffers and feature scales are folded into copies of the weights at construction, so these vectors
are the effective ones. Layers without a transcoder have no features: their whole MLP output is an error node.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TypeAlias

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..dictionaries.base import Dictionary
from ..dictionaries.clt import CrossLayerTranscoder


def _layer_of(d: Dictionary) -> int:
    name = d.hook_name or ""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "blocks" or parts[2] != "mlp_in" or not parts[1].isdigit():
        raise ValueError(f"a circuit transcoder must read blocks.L.mlp_in; this one reads {name!r}")
    return int(parts[1])


Transcoders: TypeAlias = Sequence[Dictionary] | dict[int, Dictionary] | CrossLayerTranscoder
"""What the circuit functions take as ``transcoders``: per-layer transcoders (a list whose hook names give the layers,
or a dict layer -> transcoder) or one cross-layer transcoder."""


class TranscoderStack:
    """Per-layer transcoders (a list, or a dict layer -> transcoder) or one CLT, for ``n_layers`` model layers."""

    def __init__(self, transcoders: Transcoders, n_layers: int):
        self.n_layers = n_layers
        self.clt: CrossLayerTranscoder | None = None
        self.per_layer: dict[int, Dictionary] = {}
        if isinstance(transcoders, CrossLayerTranscoder):
            clt = copy.deepcopy(transcoders).eval()
            clt.fold_activation_norm()
            clt.fold_feature_scale()
            if clt.layers[-1] >= n_layers:
                raise ValueError(f"the CLT covers blocks {clt.layers[0]}..{clt.layers[-1]}; the model has {n_layers}")
            self.clt = clt
        else:
            items = transcoders.items() if isinstance(transcoders, dict) else (
                (_layer_of(d), d) for d in transcoders)
            for layer, d in items:
                if not d.cfg.transcoder:
                    raise ValueError(f"the dictionary for layer {layer} is not a transcoder ({d.architecture})")
                if not 0 <= layer < n_layers:
                    raise ValueError(f"transcoder layer {layer} outside the model's 0..{n_layers - 1}")
                if layer in self.per_layer:
                    raise ValueError(f"two transcoders for layer {layer}")
                d = copy.deepcopy(d).eval()
                d.fold_activation_norm()
                d.fold_feature_scale()
                self.per_layer[layer] = d
            if not self.per_layer:
                raise ValueError("no transcoders given")
        for p in self.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ structure
    def parameters(self) -> list[Tensor]:
        mods = [self.clt] if self.clt is not None else list(self.per_layer.values())
        return [p for m in mods for p in m.parameters()]

    @property
    def layers(self) -> list[int]:
        """Model layers that have features."""
        return list(self.clt.layers) if self.clt is not None else sorted(self.per_layer)

    def d_sae(self, layer: int) -> int:
        return self.clt.d_sae if self.clt is not None else self.per_layer[layer].d_sae

    def _src(self, layer: int) -> int:
        assert self.clt is not None
        return layer - self.clt.options.first_layer

    def writes(self, layer: int) -> bool:
        """Whether layer ``layer``'s MLP output has a reconstruction (else it is all error)."""
        if self.clt is not None:
            return layer >= self.clt.layers[0] and layer <= self.clt.layers[-1]
        return layer in self.per_layer

    # ------------------------------------------------------------------ encoding / decoding
    def pre_acts(self, layer: int, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_sae"]:
        if self.clt is not None:
            s = self._src(layer)
            c = self.clt
            return (x.to(c.dtype) - c.b_in[s]) @ c.W_enc[s] + c.b_enc[s]
        return self.per_layer[layer].pre_acts(x)

    def activate(self, layer: int, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        if self.clt is not None:
            c = self.clt
            if c.options.activation == "jumprelu":
                thr = c._threshold()[self._src(layer)]
                return pre * (pre > thr)
            return torch.relu(pre)
        return self.per_layer[layer].activate(pre)

    def encode(self, layer: int, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_sae"]:
        return self.activate(layer, self.pre_acts(layer, x))

    def decode(self, layer: int, acts: dict[int, Tensor], x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d"]:
        """Reconstruction of ``mlp_out`` at ``layer``; ``acts[l]`` are the activations read at layer ``l``."""
        if self.clt is not None:
            first = self.clt.options.first_layer
            feats = [acts[first + s] for s in range(self._src(layer) + 1)]
            return self.clt.decode_layer(feats, self._src(layer), x)
        return self.per_layer[layer].decode(acts[layer], x)

    # ------------------------------------------------------------------ directions
    def encoder_vectors(self, layer: int, idx: Int[Tensor, " n"]) -> Float[Tensor, "n d_model"]:
        if self.clt is not None:
            return self.clt.W_enc[self._src(layer)][:, idx].T
        return self.per_layer[layer].W_enc[:, idx].T

    def decoder_vectors(self, layer: int, idx: Int[Tensor, " n"]) -> dict[int, Float[Tensor, "n d_model"]]:
        """``{m: vectors}``: what one unit of activation of each feature adds to ``mlp_out`` of layer ``m``."""
        if self.clt is not None:
            s = self._src(layer)
            first = self.clt.options.first_layer
            return {first + m: self.clt.W_dec[s, idx, m] for m in range(s, self.clt.options.n_layers)}
        return {layer: self.per_layer[layer].W_dec[idx]}

    def encoder_bias(self, layer: int) -> Float[Tensor, " d_sae"]:
        """The constant part of the pre-activation (``b_enc`` minus the input-centring term)."""
        if self.clt is not None:
            s = self._src(layer)
            return self.clt.b_enc[s] - self.clt.b_in[s] @ self.clt.W_enc[s]
        return self.per_layer[layer].pre_acts(torch.zeros(self.per_layer[layer].d_in))


def load_transcoders(path: str) -> list[Dictionary] | CrossLayerTranscoder:
    """Transcoders from a folder: a circuit-tracer transcoder set (``config.yaml``), one dictionary folder
    (``cfg.json``: a CLT or a single transcoder), or a folder of per-layer dictionary folders."""
    from pathlib import Path

    from ..dictionaries import load, load_transcoder_set

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"transcoders folder {folder} does not exist")
    if (folder / "config.yaml").is_file():
        return load_transcoder_set(folder)
    if (folder / "cfg.json").is_file():
        d = load(str(folder))
        return d if isinstance(d, CrossLayerTranscoder) else [d]
    subs = sorted(p for p in folder.iterdir() if (p / "cfg.json").is_file())
    if not subs:
        raise FileNotFoundError(f"{folder} holds no transcoders: expected config.yaml (a transcoder set), cfg.json "
                                "(one dictionary) or subfolders with cfg.json")
    return [load(str(p)) for p in subs]
