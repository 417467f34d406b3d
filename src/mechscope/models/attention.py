"""The attention function that makes ``attn.pattern`` observable and replaceable.

HF computes attention through a registry of attention functions chosen by ``config._attn_implementation``. When a
pattern hook is active, the hooked model switches the model to ``"mechscope_eager"`` for that call: it runs the
family's own eager attention (so scaling, soft-capping and masks stay HF's), hands the probabilities to the hooks,
and, only if a hook replaced them, recomputes ``pattern @ V``. Other calls keep the model's fast default (SDPA).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

NAME = "mechscope_eager"
RUNNER_ATTR = "_mechscope_pattern_runner"


def _family_eager(module: nn.Module) -> Callable:
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:
        raise RuntimeError(f"{type(module).__name__} has no eager_attention_forward; attn.pattern is unavailable")
    return fn


def mechscope_eager(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask, **kwargs):
    out, weights = _family_eager(module)(module, query, key, value, attention_mask, **kwargs)
    for runner in getattr(module, RUNNER_ATTR, ()):  # one per active hook session, in attach order
        new = runner(weights)  # (B, H, Tq, Tk) or None when unchanged
        if new is not None:
            groups = new.shape[1] // value.shape[1]
            v = value.repeat_interleave(groups, dim=1) if groups > 1 else value  # (B, H, Tk, Dh)
            out = torch.matmul(new.to(v.dtype), v).transpose(1, 2).contiguous()  # (B, Tq, H, Dh)
            weights = new
    return out, weights


AttentionInterface.register(NAME, mechscope_eager)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)
