"""Shared helpers of the circuit tests: random transcoders with a sensible number of active features."""

from __future__ import annotations

import torch

import mechscope as ms
from mechscope.dictionaries import create, create_mlp_transcoder


def random_transcoders(model: ms.HookedModel, d_sae: int = 48, bias: float = -0.3, seed: int = 0, skip: bool = False):
    torch.manual_seed(seed)
    d = model.cfg.d_model
    tcs = [create_mlp_transcoder(l, d_model=d, d_sae=d_sae, skip=skip) for l in range(model.cfg.n_layers)]
    with torch.no_grad():
        for t in tcs:
            t.b_enc.fill_(bias)
            t.b_dec.normal_(0, 0.1)
            if skip:
                t.W_skip.normal_(0, 0.05)
    return tcs


def random_clt(model: ms.HookedModel, d_sae: int = 32, bias: float = -0.3, seed: int = 0):
    torch.manual_seed(seed)
    clt = create("clt", d_in=model.cfg.d_model, d_sae=d_sae, n_layers=model.cfg.n_layers)
    with torch.no_grad():
        clt.b_enc.fill_(bias)
    return clt
