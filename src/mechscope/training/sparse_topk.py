"""Sparse-gradient training step for TopK autoencoders: a step costs about one dense matmul (the encoder's).

Only ``k`` latents per row are active, so every gradient except the encoder's forward matmul is sparse:

- :class:`SelectedPre`: pre-activations gathered at chosen latents ``idx`` from a precomputed dense ``pre``; its
  backward gives ``W_enc``, ``b_enc`` and (through the input centring) ``b_dec`` gradients with a sparse-dense
  product over the ``k`` chosen latents per row, instead of the dense ``x.T @ grad_pre`` and ``grad_pre @ W_enc.T``
  that autograd would run on a ``(rows, d_sae)`` gradient that is almost all zeros.
- :class:`SparseDecode`: ``sum_j acts[:, j] * W_dec[idx[:, j]]`` with sparse backward to ``acts`` (a sampled
  matmul computing only the k needed entries per row) and ``W_dec``.

:func:`topk_loss_terms` builds the usual TopK terms (``mse``, ``fvu``, ``l0``, ``auxk``) from them; it computes the
same function and gradients as ``TopKDictionary.loss_terms`` (checked in ``tests/training/test_sparse_topk.py``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from ..dictionaries import TopKDictionary
from ..dictionaries.base import row_mean
from ..dictionaries.topk import auxk_size


class Pattern:
    """The ``(d_sae, rows)`` sparsity pattern of chosen latents ``idx`` (rows x k), in CSR order."""

    def __init__(self, idx: Tensor, n_latents: int):
        n, k = idx.shape
        flat = idx.reshape(-1)
        rows = torch.arange(n, device=idx.device).repeat_interleave(k)
        self.perm = torch.argsort(flat * n + rows)  # CSR order of the (row, j) entries
        self.col = rows[self.perm]
        counts = torch.bincount(flat, minlength=n_latents)
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.shape = (n_latents, n)

    def csr(self, values: Tensor) -> Tensor:
        """Sparse ``(d_sae, rows)`` matrix with ``values[n, j]`` at ``(idx[n, j], n)``."""
        with warnings.catch_warnings():  # "beta state" notice from torch
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.crow, self.col, values.reshape(-1)[self.perm], self.shape,
                                           check_invariants=False)

    def sampled(self, a: Tensor, b: Tensor) -> Tensor:
        """``(a @ b)[idx[n, j], n]`` for every ``(n, j)`` as a ``(rows, k)`` tensor, computing only those entries."""
        out = torch.sparse.sampled_addmm(self.csr(torch.zeros(self.perm.numel(), dtype=a.dtype, device=a.device)),
                                         a, b, beta=0.0)
        flat = torch.empty_like(out.values())
        flat[self.perm] = out.values()
        return flat.reshape(self.shape[1], -1)


class SelectedPre(torch.autograd.Function):
    """``pre.gather(1, idx)`` where ``pre = (x - b_dec?) @ W_enc + b_enc``, with sparse gradients."""

    @staticmethod
    def forward(ctx: Any, xc: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, pre: Tensor, idx: Tensor,
                pattern: Pattern, center: bool) -> Tensor:
        ctx.save_for_backward(xc, W_enc, idx)
        ctx.center, ctx.pattern = center, pattern
        return pre.gather(1, idx)  # (N, k)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        xc, W_enc, idx = ctx.saved_tensors
        s = W_enc.shape[1]
        g_w_enc = (ctx.pattern.csr(g) @ xc).T.contiguous()  # (D, S)
        g_b_enc = torch.zeros(s, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1))
        g_b_dec = -(W_enc @ g_b_enc) if ctx.center else None  # (D,)
        return None, g_w_enc, g_b_enc, g_b_dec, None, None, None, None


class SparseDecode(torch.autograd.Function):
    """``sum_j acts[:, j] * W_dec[idx[:, j]]`` with sparse gradients to ``acts`` and ``W_dec``."""

    @staticmethod
    def forward(ctx: Any, acts: Tensor, idx: Tensor, W_dec: Tensor, pattern: Pattern) -> Tensor:
        ctx.save_for_backward(acts, idx, W_dec)
        ctx.pattern = pattern
        return torch.nn.functional.embedding_bag(idx, W_dec, per_sample_weights=acts, mode="sum")  # (N, D)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        acts, idx, W_dec = ctx.saved_tensors
        g_acts = ctx.pattern.sampled(W_dec, g.T)  # (N, k): <W_dec[idx[n, j]], g[n]>
        g_w_dec = ctx.pattern.csr(acts) @ g  # (S, D)
        return g_acts, None, g_w_dec, None


def supports(d: Any) -> bool:
    """True for a plain TopK autoencoder/transcoder (skip connection allowed) without buffers (the training setting)."""
    return (type(d) is TopKDictionary and d.W_enc.dim() == 2 and d.norm_scale_in is None
            and d.norm_scale_out is None and d.feature_scale is None)


def topk_loss_terms(d: TopKDictionary, x: Tensor, target: Tensor, dead_mask: Tensor | None,
                    row_weight: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """``(terms, fired)``: the TopK training terms of ``d`` on ``x`` computed with sparse gradients.

    ``terms`` has ``mse`` (squared error summed over features, mean over rows), ``fvu``, ``l0`` and ``auxk``
    (as in :func:`mechscope.dictionaries.topk.auxk_loss`); ``fired`` marks latents active on some row.
    ``row_weight`` (``(N,)``) weights each row's squared error in ``mse`` and ``auxk`` (``fvu`` stays unweighted).
    """
    x = x.to(d.dtype)
    center = d.cfg.apply_b_dec_to_input
    xc = (x - d.b_dec.detach()) if center else x  # (N, D)
    with torch.no_grad():
        pre = torch.addmm(d.b_enc, xc, d.W_enc)  # (N, S): the one dense matmul
        _, idx = pre.topk(d.options.k, dim=-1, sorted=False)  # (N, k)
        pattern = Pattern(idx, d.cfg.d_sae)
    acts = SelectedPre.apply(xc, d.W_enc, d.b_enc, d.b_dec, pre, idx, pattern, center).relu()  # (N, k)
    recon = SparseDecode.apply(acts, idx, d.W_dec, pattern) + d.b_dec  # (N, D)
    if d.cfg.skip_connection:
        recon = recon + x @ d.W_skip.T  # the skip transcoder's linear path: small and dense, plain autograd
    target = target.to(recon.dtype)
    row_err = (recon - target).pow(2).sum(-1)  # (N,)
    variance = (target - target.mean(0)).pow(2).sum(-1).mean()
    active = acts.detach() > 0
    terms = {"mse": row_mean(row_err, row_weight),
             "fvu": row_err.mean() / variance.clamp_min(1e-12), "l0": active.sum(-1).float().mean()}
    terms["auxk"] = _auxk(d, xc, pre, recon, target, dead_mask, center, row_weight)
    fired = torch.zeros(d.cfg.d_sae, dtype=torch.bool, device=x.device)
    fired[idx[active]] = True
    return terms, fired


def _auxk(d: TopKDictionary, xc: Tensor, pre: Tensor, recon: Tensor, target: Tensor, dead: Tensor | None,
          center: bool, row_weight: Tensor | None = None) -> Tensor:
    if dead is None or not bool(dead.any()):
        return recon.new_zeros(())
    k_aux, scale = auxk_size(d.d_out, int(dead.sum()))
    err = (target - recon).detach()  # (N, D)
    with torch.no_grad():
        _, idx = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1, sorted=False)  # (N, k_aux)
        pattern = Pattern(idx, d.cfg.d_sae)
    vals = SelectedPre.apply(xc, d.W_enc, d.b_enc, d.b_dec, pre, idx, pattern, center)  # raw: see topk.auxk_loss
    e_hat = SparseDecode.apply(vals, idx, d.W_dec, pattern)  # (N, D)
    return scale * row_mean((e_hat - err).pow(2).sum(-1), row_weight)  # the units of mse (see topk.auxk_loss)
