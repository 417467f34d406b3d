"""Splice dictionaries into a model's forward pass: replace activations with their reconstructions.

``spliced(model, dicts_and_sites, keep_error=False)`` attaches hooks through ``model.hooks([(name, fn), ...])``
(the HookedModel API) for the duration of a ``with`` block:

- an autoencoder at ``at`` (default: its ``hook_name``) replaces that activation with ``decode(edit(encode(x)))``;
- a transcoder stores its input at ``at`` (``blocks.L.mlp_in``) and replaces ``out`` (``blocks.L.mlp_out``);
- a cross-layer transcoder encodes every covered ``mlp_in`` and replaces every ``mlp_out`` with the sum of the
  decoders of all earlier-or-equal layers (it is causal, so one forward pass suffices);
- acausal crosscoders cannot be spliced in one pass and are refused.

``keep_error=True`` adds the error term ``x - decode(encode(x))`` computed from the real activation (no edit,
detached), so the model's output is unchanged while edits to the features (the optional ``edit`` callback:
steering, ablation) still propagate. The yielded :class:`SpliceState` holds the latest feature activations per
site (with their autograd graph, for attribution).

Several splices may be given at once; two splices may not write the same hook point.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..models.hooked import set_splicer
from .base import Dictionary
from .clt import CrossLayerTranscoder
from .crosscoder import Crosscoder
from .errors import DictionaryConfigError, DictionaryModelError, DictionaryShapeError
from .hooknames import block_hook, to_canonical
from .topk import BatchTopKDictionary

HookFn = Callable[[Tensor, Any], Tensor | None]


@dataclass
class Splice:
    """One dictionary spliced into the model."""

    dictionary: Dictionary
    at: str | None = None
    """Hook point read (and, for autoencoders, written). Default: the dictionary's ``hook_name``."""
    out: str | None = None
    """Hook point written by a transcoder. Default: the dictionary's ``hook_name_out``."""
    edit: Callable[..., Tensor] | None = None
    """``edit(feature_acts) -> feature_acts`` applied before decoding (CLTs: ``edit(feature_acts, layer)``)."""
    keep_error: bool | None = None
    """Per-splice override of ``spliced(..., keep_error=)``."""


@dataclass
class SpliceState:
    """Yielded by :func:`spliced`: what the splices saw during the latest forward pass."""

    feature_acts: dict[str, Tensor] = field(default_factory=dict)
    """Input hook name -> (edited) feature activations of the latest forward pass."""
    errors: dict[str, Tensor] = field(default_factory=dict)
    """Output hook name -> error term added (only with ``keep_error``)."""


SpliceSpec = Dictionary | Splice | tuple


def _as_splice(item: SpliceSpec) -> Splice:
    if isinstance(item, Splice):
        return item
    if isinstance(item, Dictionary):
        return Splice(item)
    if isinstance(item, tuple) and item and isinstance(item[0], Dictionary):
        d, *rest = item
        if len(rest) == 1 and isinstance(rest[0], tuple):
            return Splice(d, *rest[0])
        return Splice(d, *rest)
    raise DictionaryConfigError(
        f"cannot splice {type(item).__name__}: give a Dictionary, (dictionary, hook_name), "
        "(dictionary, (hook_in, hook_out)) or a Splice"
    )


def _output(recon: Tensor, clean: Tensor | None, act: Tensor, keep: bool, state: SpliceState, name: str) -> Tensor:
    if keep:
        with torch.no_grad():
            error = act - (recon if clean is None else clean).to(act.dtype)
        state.errors[name] = error
        return (recon.to(act.dtype) + error).to(act.dtype)
    return recon.to(act.dtype)


_D_MODEL_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_in", "attn_out", "mlp_in", "mlp_out")


def _model_width(model: Any, hook_name: str) -> int | None:
    """Width of ``hook_name`` from ``model.cfg`` (d_model / d_mlp) when the model says; None if unknown."""
    cfg = getattr(model, "cfg", None)
    kind = hook_name.split(".", 2)[-1] if hook_name.startswith("blocks.") else hook_name
    attr = "d_model" if kind in _D_MODEL_KINDS or kind in ("embed", "final_norm") else (
        "d_mlp" if kind == "mlp.post" else None)
    width = getattr(cfg, attr, None) if attr else None
    return width if isinstance(width, int) else None


def _check_widths(model: Any, d: Dictionary, name_in: str, name_out: str | None) -> None:
    width = _model_width(model, name_in)
    d.check_compatible(d.d_in if width is None else width, name_in)
    width_out = _model_width(model, name_out) if name_out else None
    if width_out is not None and width_out != d.d_out:
        raise DictionaryShapeError(
            f"transcoder writes width d_out={d.d_out}, but {name_out!r} of this model has width {width_out}"
        )


#: Other spellings of the same model (TransformerLens names, the built-ins' hub names), by normalised key.
MODEL_ALIASES = {"gpt2-small": "gpt2", "smollm2-135m-instruct": "smollm2-135m", "gemma-3-270m-it": "gemma-3-270m"}
_QUANT_SUFFIX = re.compile(r"[._-](q\d[\w]*|iq\d[\w]*|f16|f32|bf16)$")


def model_key(name: Any) -> str:
    """A model's name (built-in name, hub id, folder or .gguf path) reduced to compare across spellings:
    ``/data/SmolLM2-135M-Instruct.Q4_1.gguf``, ``HuggingFaceTB/SmolLM2-135M-Instruct`` and ``smollm2-135m`` agree."""
    key = str(name).strip().replace("\\", "/").rstrip("/").split("/")[-1].lower().removesuffix(".gguf")
    key = _QUANT_SUFFIX.sub("", key)
    return MODEL_ALIASES.get(key, key)


def check_model_name(model: Any, d: Dictionary, *, allow_other_model: bool = False) -> None:
    """Refuse (:class:`DictionaryModelError`) a dictionary recorded for another model than ``model``.

    Widths can agree by accident (every 576-wide model reads 576-wide residuals): the recorded ``model_name`` is the
    check that the dictionary was trained on this model's activations. Names are compared through
    :func:`model_key`; a dictionary or model without a name is not checked. ``allow_other_model=True`` skips the
    check (a dictionary deliberately transferred to a fine-tune, say).
    """
    mine = getattr(d.cfg, "model_name", None)
    theirs = getattr(getattr(model, "cfg", None), "name", None)
    if allow_other_model or not mine or not isinstance(theirs, str) or not theirs:
        return
    if model_key(mine) != model_key(theirs):
        raise DictionaryModelError(
            f"this {d.architecture} dictionary was trained on {mine!r}, but the model is {theirs!r}; load the model "
            f"it was trained on, or pass allow_other_model=True to use it anyway")


def check_model_compatible(model: Any, d: Dictionary, *, allow_other_model: bool = False) -> None:
    """Refuse a dictionary whose recorded hook points have other widths in ``model`` (:class:`DictionaryShapeError`)
    or that records another model (:class:`DictionaryModelError`, see :func:`check_model_name`).

    Hook points the dictionary does not record, or whose width the model does not state, are not checked.
    """
    check_model_name(model, d, allow_other_model=allow_other_model)
    if isinstance(d, CrossLayerTranscoder):
        n_model = getattr(getattr(model, "cfg", None), "n_layers", None)
        if isinstance(n_model, int) and d.layers[-1] >= n_model:
            raise DictionaryShapeError(f"CLT covers blocks {d.layers[0]}..{d.layers[-1]}; the model has {n_model}")
        _check_widths(model, d, block_hook(d.layers[0], "mlp_in"), block_hook(d.layers[0], "mlp_out"))
    elif isinstance(d, Crosscoder):
        for name in d.options.hook_names or []:
            width = _model_width(model, name)
            if width is not None and width != d.d_in:
                raise DictionaryShapeError(f"crosscoder reads width {d.d_in}; {name!r} of this model has {width}")
    elif d.hook_name is not None:
        _check_widths(model, d, d.hook_name, d.hook_name_out if d.cfg.transcoder else None)


def _autoencoder_hooks(model: Any, sp: Splice, keep: bool, state: SpliceState) -> list[tuple[str, HookFn]]:
    d, name = sp.dictionary, to_canonical(sp.at or sp.dictionary.hook_name)
    if name is None:
        raise DictionaryConfigError(f"{d.architecture} dictionary records no hook_name: pass at=")
    _check_widths(model, d, name, None)

    def replace(act: Tensor, hook: Any) -> Tensor:
        d.check_compatible(act.shape)
        if sp.edit is None:
            out = d(act)
            state.feature_acts[name] = out.feature_acts
            return _output(out.reconstruction, None, act, keep, state, name)
        f = d.encode(act)
        edited = sp.edit(f)
        state.feature_acts[name] = edited
        clean = d.decode(f, act) if keep else None
        return _output(d.decode(edited, act), clean, act, keep, state, name)

    return [(name, replace)]


def _transcoder_hooks(model: Any, sp: Splice, keep: bool, state: SpliceState) -> list[tuple[str, HookFn]]:
    d = sp.dictionary
    name_in, name_out = to_canonical(sp.at or d.hook_name), to_canonical(sp.out or d.hook_name_out)
    if name_in is None or name_out is None:
        raise DictionaryConfigError("transcoder without recorded hook names: pass at= and out=")
    _check_widths(model, d, name_in, name_out)
    stash: dict[str, Tensor] = {}

    def read(act: Tensor, hook: Any) -> None:
        d.check_compatible(act.shape)
        stash["x"] = act

    def write(act: Tensor, hook: Any) -> Tensor:
        if "x" not in stash:
            raise DictionaryConfigError(f"transcoder output hook {name_out!r} ran before its input {name_in!r}")
        x = stash.pop("x")
        f = d.encode(x)
        edited = sp.edit(f) if sp.edit is not None else f
        state.feature_acts[name_in] = edited
        clean = d.decode(f, x) if keep and sp.edit is not None else None
        return _output(d.decode(edited, x), clean, act, keep, state, name_out)

    return [(name_in, read), (name_out, write)]


def _clt_hooks(model: Any, sp: Splice, keep: bool, state: SpliceState) -> list[tuple[str, HookFn]]:
    d: CrossLayerTranscoder = sp.dictionary
    if sp.at is not None or sp.out is not None:
        raise DictionaryConfigError("a CLT splices at the mlp_in / mlp_out of its own layers; do not pass at=/out=")
    check_model_compatible(model, d)
    feats: dict[int, tuple[Tensor, Tensor, Tensor]] = {}  # source -> (edited, clean, input)
    hooks: list[tuple[str, HookFn]] = []
    for src, layer in enumerate(d.layers):
        def read(act: Tensor, hook: Any, src: int = src, layer: int = layer) -> None:
            d.check_compatible(act.shape)
            f = d.encode_layer(act, src)
            edited = sp.edit(f, src) if sp.edit is not None else f
            feats[src] = (edited, f, act)
            state.feature_acts[block_hook(layer, "mlp_in")] = edited

        def write(act: Tensor, hook: Any, src: int = src, layer: int = layer) -> Tensor:
            if any(s not in feats for s in range(src + 1)):
                raise DictionaryConfigError(f"CLT output at layer {layer} ran before the inputs of layers <= {layer}")
            x = feats[src][2]
            recon = d.decode_layer([feats[s][0] for s in range(src + 1)], src, x)
            clean = d.decode_layer([feats[s][1] for s in range(src + 1)], src, x) if keep and sp.edit else None
            if src == len(d.layers) - 1:
                feats.clear()  # the forward pass is past the last covered layer
            return _output(recon, clean, act, keep, state, block_hook(layer, "mlp_out"))

        hooks += [(block_hook(layer, "mlp_in"), read), (block_hook(layer, "mlp_out"), write)]
    return hooks


@contextmanager
def spliced(model: Any, dicts_and_sites: SpliceSpec | Sequence[SpliceSpec], keep_error: bool = False, *,
            at: str | None = None, out: str | None = None, edit: Callable[..., Tensor] | None = None,
            allow_other_model: bool = False) -> Iterator[SpliceState]:
    """Replace activations with dictionary reconstructions inside a ``with`` block (see module docstring).

    ``dicts_and_sites``: a dictionary, ``(dictionary, hook_name)``, ``(dictionary, (hook_in, hook_out))``, a
    :class:`Splice`, or a list of those. ``at`` / ``out`` / ``edit`` are shorthands for a single dictionary:
    ``spliced(model, sae, at="blocks.6.resid_post")``. ``model`` needs ``model.hooks([(name, fn), ...])``.
    A dictionary recorded for another model is refused (:func:`check_model_name`) unless ``allow_other_model``.
    """
    if at is not None or out is not None or edit is not None:
        if not isinstance(dicts_and_sites, Dictionary):
            raise DictionaryConfigError("at=/out=/edit= apply to a single dictionary; use Splice(...) for several")
        dicts_and_sites = Splice(dicts_and_sites, at=at, out=out, edit=edit)
    items = [dicts_and_sites] if isinstance(dicts_and_sites, (Dictionary, Splice, tuple)) else list(dicts_and_sites)
    if not items:
        raise DictionaryConfigError("spliced() needs at least one dictionary")
    state = SpliceState()
    hooks: list[tuple[str, HookFn]] = []
    written: dict[str, int] = {}
    for i, sp in enumerate(_as_splice(item) for item in items):
        keep = keep_error if sp.keep_error is None else sp.keep_error
        d = sp.dictionary
        check_model_name(model, d, allow_other_model=allow_other_model)
        if isinstance(d, BatchTopKDictionary) and d.training:
            raise DictionaryConfigError("a BatchTopK dictionary in training mode encodes whole batches at once; "
                                        "call .eval() to splice it with its inference threshold")
        if isinstance(d, Crosscoder):
            raise DictionaryConfigError(
                "a crosscoder reads all its layers to reconstruct each one (acausal): it cannot be spliced into a "
                "single forward pass; use encode/decode on cached activations"
            )
        if isinstance(d, CrossLayerTranscoder):
            new = _clt_hooks(model, sp, keep, state)
            outputs = [n for n, _ in new[1::2]]
        elif d.cfg.transcoder:
            new = _transcoder_hooks(model, sp, keep, state)
            outputs = [new[1][0]]
        else:
            new = _autoencoder_hooks(model, sp, keep, state)
            outputs = [new[0][0]]
        for name in outputs:
            if name in written:
                raise DictionaryConfigError(f"splices {written[name]} and {i} both write {name!r}")
            written[name] = i
        hooks += new
    with model.hooks(hooks):
        yield state


set_splicer(spliced)  # HookedModel.spliced(...) is spliced(model, ...); models cannot import dictionaries
