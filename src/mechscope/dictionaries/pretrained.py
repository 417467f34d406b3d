"""Load public dictionaries by name: ``load_pretrained("gemma-scope-2b-pt-res", "layer_12/width_16k/canonical")``.

The release table is :data:`.releases.RELEASES`. Files come through ``huggingface_hub`` (its cache, its token,
``HF_HUB_OFFLINE=1`` for cached files only) and are converted by :mod:`.converters` or read by :mod:`.io`; the
result is an ordinary :class:`~.base.Dictionary` with canonical hook names (a transcoder set gives a list, one per
layer). Unknown release or id names raise :class:`PretrainedNotFoundError` listing the closest names.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from .base import Dictionary
from .errors import DictionaryFormatError, DictionaryNotFoundError
from .releases import BLOCK_ID, GEMMA_SCOPE_ID, LAYER_ID, LLAMA_SCOPE_ID, RELEASES, Release

log = logging.getLogger(__name__)
CANONICAL_L0 = 100
"""``canonical`` Gemma Scope ids pick the variant whose average L0 is closest to this (Gemma Scope's rule)."""


class PretrainedNotFoundError(DictionaryNotFoundError, KeyError):
    """An unknown release or id, or files missing from the hub (or from the local cache when offline)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _close(name: str, options: list[str], n: int = 5) -> str:
    close = difflib.get_close_matches(name, options, n=n, cutoff=0.5)
    return ", ".join(close) if close else ", ".join(options[:n]) + (" ..." if len(options) > n else "")


def get_release(name: str) -> Release:
    """The release called ``name``; an unknown name lists the closest known ones."""
    if name not in RELEASES:
        raise PretrainedNotFoundError(f"unknown dictionary release {name!r}; closest: {_close(name, list(RELEASES))}"
                                      f" (mechscope dictionaries list shows all {len(RELEASES)})")
    return RELEASES[name]


def _layer(release: Release, layer: int, sae_id: str) -> int:
    if not 0 <= layer < release.n_layers:
        raise PretrainedNotFoundError(f"{release.name}: id {sae_id!r} names layer {layer}, but "
                                      f"{release.model} has layers 0..{release.n_layers - 1}")
    return layer


def parse_id(release: Release, sae_id: str) -> tuple[int | None, str]:
    """``(layer or None for a whole set, folder or file stem in the repository)``; raises on a malformed id."""
    bad = PretrainedNotFoundError(f"{release.name} has no id {sae_id!r}; ids look like {release.ids}, e.g. "
                                  f"{_close(sae_id, release.example_ids())}")
    if release.layout == "gemma_scope":
        m = GEMMA_SCOPE_ID.match(sae_id)
        if not m or m.group(2) not in release.widths:
            raise bad
        if release.name.endswith("-canonical") and m.group(3) != "canonical":
            raise bad
        return _layer(release, int(m.group(1)), sae_id), sae_id
    if release.layout == "llama_scope":
        m = LLAMA_SCOPE_ID.match(sae_id)
        site, exp = release.extra["site"], release.extra["expansion"]
        if not m or m.group(2) != site.lower() or m.group(3) != exp:
            raise bad
        layer = _layer(release, int(m.group(1)), sae_id)
        return layer, f"Llama3_1-8B-Base-L{layer}{site}-{exp}x"
    if release.layout == "saelens":
        if sae_id not in release.example_ids():
            raise bad
        m = BLOCK_ID.match(sae_id)
        return (int(m.group(1)) if m else None), sae_id
    if sae_id == "all":
        return None, ""
    m = LAYER_ID.match(sae_id)
    if not m:
        raise bad
    return _layer(release, int(m.group(1)), sae_id), sae_id


# ---------------------------------------------------------------------------------------------------- hub access
def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _download(repo_id: str, filename: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except Exception as e:  # network, auth, missing file: one error naming what was asked for
        where = "the local hub cache (HF_HUB_OFFLINE is set)" if _offline() else "the hub"
        raise PretrainedNotFoundError(f"could not get {filename!r} of {repo_id} from {where}: "
                                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _repo_files(repo_id: str, revision: str | None) -> list[str]:
    """Every file path of the repository (the cached snapshot when offline)."""
    from huggingface_hub import list_repo_files, snapshot_download

    try:
        if not _offline():
            return list(list_repo_files(repo_id, revision=revision))
        root = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception as e:
        raise PretrainedNotFoundError(f"could not list the files of {repo_id}: {type(e).__name__}: {e}") from e
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]


def resolve_canonical(release: Release, sae_id: str, revision: str | None = None) -> str:
    """``layer_L/width_W/canonical`` -> the ``average_l0_N`` folder with N closest to :data:`CANONICAL_L0`."""
    prefix = sae_id.rsplit("/", 1)[0] + "/average_l0_"
    found = {}
    for f in _repo_files(release.repo_id, revision):
        m = re.match(re.escape(prefix) + r"(\d+)/params\.npz$", f)
        if m:
            found[int(m.group(1))] = f.rsplit("/", 1)[0]
    if not found:
        raise PretrainedNotFoundError(f"{release.name}: no {prefix}*/params.npz in {release.repo_id}")
    return found[min(found, key=lambda n: (abs(n - CANONICAL_L0), n))]


# ---------------------------------------------------------------------------------------------------- loading
def load_pretrained(release: str, sae_id: str, *, device: str = "cpu", revision: str | None = None,
                    model: Any = None) -> Dictionary | list[Dictionary]:
    """Download (or read from the hub cache) and convert the dictionary ``sae_id`` of ``release``.

    Transcoder sets (``circuit-tracer-*``) take ``"all"`` (a list, entry ``i`` for block ``i``) or ``"layer_L"``.
    With ``model=`` (a HookedModel) the widths are checked against it, as :func:`~.io.load` does.
    """
    from . import converters, io

    rel = get_release(release)
    layer, path = parse_id(rel, sae_id)
    hook_in, hook_out = rel.hook_names(layer) if layer is not None else (None, None)
    if rel.layout == "gemma_scope":
        if path.endswith("/canonical"):
            path = resolve_canonical(rel, path, revision)
        file = _download(rel.repo_id, f"{path}/params.npz", revision)
        out: Dictionary | list[Dictionary] = converters.load_gemma_scope(
            file, hook_name=hook_in, hook_name_out=hook_out, model_name=rel.model)
    elif rel.layout == "llama_scope":
        _download(rel.repo_id, f"{path}/hyperparams.json", revision)
        file = _download(rel.repo_id, f"{path}/checkpoints/final.safetensors", revision)
        out = converters.load_llama_scope(file.parent.parent, model_name=rel.model)
    elif rel.layout == "saelens":
        _download(rel.repo_id, f"{path}/cfg.json", revision)
        out = io.load_folder(_download(rel.repo_id, f"{path}/sae_weights.safetensors", revision).parent)
        if rel.extra.get("center_writing_weights") == "true":
            fold_input_centring(out)
    else:
        out = _load_transcoder_set(rel, layer, revision)
    items = out if isinstance(out, list) else [out]
    if model is not None:
        from .splice import check_model_compatible

        for d in items:
            check_model_compatible(model, d)
    for d in items:
        d.to(device)
    log.info("loaded %s / %s (%d dictionaries) from %s", release, sae_id, len(items), rel.repo_id)
    return out


@torch.no_grad()
def fold_input_centring(d: Dictionary) -> Dictionary:
    """Make ``d`` read the residual stream as the model computes it when it was trained on TransformerLens'
    ``center_writing_weights`` stream, whose every vector has mean 0 over ``d_model``.

    The encoder is folded exactly: with ``C = I - 11^T / d``, ``(Cx - b_dec) @ W_enc + b_enc`` equals
    ``(x - b_dec) @ (C W_enc) + b_enc - mean(b_dec) * W_enc.sum(0)``, so feature activations on the uncentred stream
    are those of the centred one. The reconstruction stays centred: it differs from the input by the input's mean
    component, which every reader of the stream removes first (LayerNorm subtracts the mean), so splicing it in gives
    the same logits; MSE / FVU against the uncentred input count that component as error.
    """
    if d.cfg.transcoder:
        raise ValueError("input centring applies to autoencoders on the residual stream, not transcoders")
    s = d.norm_scale_in
    if s is not None and s.numel() != 1:
        raise ValueError("input centring cannot be folded through a per-dimension input scale")
    w = d.W_enc  # (d_in, d_sae)
    if d.cfg.apply_b_dec_to_input:
        d.b_enc -= d.b_dec.mean() * w.sum(0)
    w -= w.mean(0, keepdim=True)
    return d


def _load_transcoder_set(rel: Release, layer: int | None, revision: str | None) -> Dictionary | list[Dictionary]:
    from . import converters

    cfg_path = _download(rel.repo_id, "config.yaml", revision)
    try:
        config = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as e:
        raise DictionaryFormatError(f"{rel.repo_id}/config.yaml is not valid YAML: {e}") from e
    if not isinstance(config, dict) or config.get("model_kind") != "transcoder_set":
        raise DictionaryFormatError(f"{rel.repo_id}/config.yaml: expected model_kind: transcoder_set")
    entries = config.get("transcoders")
    layers = range(rel.n_layers) if layer is None else [layer]
    if entries is not None and len(entries) != rel.n_layers:
        raise DictionaryFormatError(f"{rel.repo_id}/config.yaml lists {len(entries)} transcoders; "
                                    f"{rel.model} has {rel.n_layers} layers")
    out = []
    for L in layers:
        ref = str(entries[L]) if entries is not None else f"hf://{rel.repo_id}/layer_{L}.safetensors"
        m = re.match(r"^hf://([^/]+/[^/]+)/(.+)$", ref)
        if not m:
            raise DictionaryFormatError(f"{rel.repo_id}/config.yaml: transcoder {L} is {ref!r}, not an hf:// file")
        file = _download(m.group(1), m.group(2), revision if m.group(1) == rel.repo_id else None)
        out.append(converters.load_transcoder_file(file, L, config, model_name=rel.model))
    return out if layer is None else out[0]


def list_releases(model: str | None = None) -> list[Release]:
    """Known releases, those whose model id contains ``model`` (case-insensitive) when given."""
    return [r for r in RELEASES.values() if model is None or model.lower() in r.model.lower()]


__all__ = ["CANONICAL_L0", "PretrainedNotFoundError", "get_release", "list_releases", "load_pretrained", "parse_id",
           "resolve_canonical"]
