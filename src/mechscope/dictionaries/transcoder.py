"""Transcoders: read one hook point (usually ``blocks.L.mlp_in``), reconstruct another (``blocks.L.mlp_out``).

A transcoder is any dictionary with ``transcoder=True``: ``b_dec`` is an output bias (never subtracted from the
input), ``d_out`` may differ from ``d_in``, and ``hook_name_out`` names the point it writes. ``skip_transcoder``
adds the linear path ``x @ W_skip.T`` (``W_skip [d_out, d_in]``, Paulo et al. 2025). Any of the relu, topk,
batchtopk and jumprelu activations can be used::

    tc = create("transcoder", d_in=512, d_sae=4096, activation="jumprelu",
                hook_name="blocks.3.mlp_in", hook_name_out="blocks.3.mlp_out")

SAELens names: ``transcoder`` / ``skip_transcoder`` (ReLU), ``jumprelu_transcoder`` / ``jumprelu_skip_transcoder``.
"""

from __future__ import annotations

from typing import Any

from .base import Dictionary
from .hooknames import block_hook
from .registry import create


def create_mlp_transcoder(layer: int, *, d_model: int, d_sae: int, skip: bool = False, activation: str = "relu",
                          **kwargs: Any) -> Dictionary:
    """A transcoder for the MLP of block ``layer``: reads ``blocks.L.mlp_in``, writes ``blocks.L.mlp_out``."""
    return create("skip_transcoder" if skip else "transcoder", d_in=d_model, d_sae=d_sae, activation=activation,
                  hook_name=block_hook(layer, "mlp_in"), hook_name_out=block_hook(layer, "mlp_out"), **kwargs)
