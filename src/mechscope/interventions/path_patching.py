"""Path patching: the effect of a sender through chosen receivers only (Wang et al., 2022).

For each sender (a head's ``attn.z`` or a layer's ``mlp_out``), batched over senders:

1. Run the base input with the sender taking its source value and every other head (``attn.z``) and MLP
   (``mlp_out``) frozen at its base value; record the receivers' activations (e.g. a later head's q / k / v, or
   the final residual). Only the direct sender → receiver paths carry the change.
2. Run the base input again with just the receivers patched to the values recorded in step 1; score the metric.

With ``direction="denoise"`` the base is the corrupted input and the source the clean one.

    >>> res = path_patch_heads(model, clean, corrupted, metric,
    ...                        receivers=[Cell("blocks.9.attn.q", head=6), Cell("blocks.9.attn.q", head=9)])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..metrics import Metric, as_metric
from ..models.hooked import HookedModel
from ..models.tokens import Inputs, Tokens
from .patching import Cell, Direction, cell_index, prepare, run_variants
from .results import PatchResult

FROZEN = ("attn.z", "mlp_out")


def path_patch(model: HookedModel, clean: Inputs, corrupted: Inputs, metric: Callable[[Tensor], Tensor] | Metric,
               senders: Sequence[Cell], receivers: Sequence[Cell], *, direction: Direction = "denoise",
               batch_size: int = 64) -> Tensor:
    """The metric with each sender's effect passed through ``receivers`` only; one value per sender."""
    metric = as_metric(metric)
    senders, receivers = list(senders), list(receivers)
    if not receivers:
        raise ValueError("path patching needs at least one receiver cell")
    for s in senders:
        kind = model.resolve(s.name).kind
        if kind not in FROZEN:
            raise ValueError(f"sender {s} must be an attn.z head or an mlp_out; got kind {kind!r}")
    for r in receivers:
        kind = model.resolve(r.name).kind
        if kind in FROZEN:
            raise ValueError(f"receiver {r} is a frozen point ({', '.join(FROZEN)}); receive at q/k/v, the "
                             f"pattern, a residual or final_norm instead")
    frozen = [n for n in model.hook_names() if model.resolve(n).kind in FROZEN]
    run = prepare(model, clean, corrupted, [*frozen, *(s.name for s in senders)], metric, direction)
    with torch.no_grad():
        _, base_cache = model.run_with_cache(run.base, names=frozen)
    b = run.base.input_ids.shape[0]
    recv_names = sorted({model.resolve(r.name).name for r in receivers}, key=lambda n: model.resolve(n).order)

    # Step 1: senders changed, everything else frozen; receivers recorded for every variant.
    recorded: dict[str, list[Tensor]] = {n: [] for n in recv_names}

    def step1_hooks(chunk: range) -> list:
        def freeze(act: Tensor, hook) -> Tensor:
            out = base_cache[hook.name].repeat(act.shape[0] // b, *([1] * (act.ndim - 1))).to(act.dtype)
            for j, i in enumerate(chunk):
                s = senders[i]
                if model.resolve(s.name).name == hook.name:
                    idx = (slice(None), *cell_index(hook.kind, s.pos, s.head))
                    out[j * b:(j + 1) * b][idx] = run.source[hook.name][idx].to(act.dtype)
            return out

        def record(act: Tensor, hook) -> None:
            recorded[hook.name].append(act.detach().clone())

        return [(lambda n: model.resolve(n).kind in FROZEN, freeze), *[(n, record) for n in recv_names]]

    n = len(senders)
    _collect(model, run.base, n, step1_hooks, batch_size)
    received = {k: torch.cat(v) for k, v in recorded.items()}  # (n*B, ...)

    # Step 2: only the receivers take their step-1 values.
    def step2_hooks(chunk: range) -> list:
        def patch(act: Tensor, hook) -> Tensor:
            out = act.clone()
            src = received[hook.name][chunk[0] * b:(chunk[-1] + 1) * b]
            for r in receivers:
                if model.resolve(r.name).name == hook.name:
                    idx = (slice(None), *cell_index(hook.kind, r.pos, r.head))
                    out[idx] = src[idx].to(out.dtype)
            return out
        return [(name, patch) for name in recv_names]

    return run_variants(model, run.base, n, metric, step2_hooks, batch_size)


def _collect(model: HookedModel, base: Tokens, n: int, hooks_for: Callable[[range], list], batch_size: int) -> None:
    """Run the stacked variants for their hooks' side effects (recording), chunked like :func:`run_variants`."""
    b = base.input_ids.shape[0]
    per = max(1, batch_size // b)
    for start in range(0, n, per):
        chunk = range(start, min(n, start + per))
        k = len(chunk)
        mask = None if base.attention_mask is None else base.attention_mask.repeat(k, 1)
        with torch.no_grad():
            model.run_with_hooks(Tokens(base.input_ids.repeat(k, 1), mask), hooks_for(chunk))


def path_patch_heads(model: HookedModel, clean: Inputs, corrupted: Inputs,
                     metric: Callable[[Tensor], Tensor] | Metric, receivers: Sequence[Cell], *,
                     layers: Sequence[int] | None = None, direction: Direction = "denoise",
                     batch_size: int = 64) -> PatchResult:
    """Path patching from every head of ``layers`` (default: all layers before the first receiver) to ``receivers``;
    a layers × heads :class:`PatchResult`."""
    metric = as_metric(metric)
    if layers is None:
        first = min((model.resolve(r.name).layer if model.resolve(r.name).layer is not None else model.cfg.n_layers)
                    for r in receivers)
        layers = range(first)
    layers = list(layers)
    heads = range(model.cfg.n_heads)
    senders = [Cell(f"blocks.{layer}.attn.z", head=h) for layer in layers for h in heads]
    values = path_patch(model, clean, corrupted, metric, senders, receivers, direction=direction,
                        batch_size=batch_size)
    run = prepare(model, clean, corrupted, [], metric, direction)
    clean_m, corr_m = ((run.source_metric, run.base_metric) if direction == "denoise"
                       else (run.base_metric, run.source_metric))
    return PatchResult(values.view(len(layers), len(heads)), [f"L{layer}" for layer in layers],
                       [f"H{h}" for h in heads], metric.name, clean_m, corr_m, title="path patching")
