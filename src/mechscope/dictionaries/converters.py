"""Read (and for circuit-tracer, write) dictionaries stored in other public layouts.

=======================  ====================================================================================
Gemma Scope              ``params.npz``: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``, ``b_enc``, ``b_dec``,
                         ``threshold`` (JumpReLU, no ``b_dec`` subtracted from the input)
EleutherAI sparsify      folder with ``cfg.json`` (``d_in``, ``k``, ``num_latents`` / ``expansion_factor``,
                         ``transcode``, ``skip_connection``) + ``sae.safetensors``: ``encoder.weight [d_sae, d_in]``,
                         ``encoder.bias``, ``W_dec [d_sae, d_in]``, ``b_dec``, optional ``W_skip [d_in, d_in]``
dictionary_learning      ``ae.pt`` state dict (read with ``torch.load(weights_only=True)``), optional sibling
                         ``config.json``; AutoEncoder, AutoEncoderNew, AutoEncoderTopK, BatchTopKSAE,
                         JumpReluAutoEncoder, GatedAutoEncoder (decoder-norm scaling folded into the weights)
circuit-tracer           transcoder set: ``config.yaml`` (``model_kind: transcoder_set``, ``feature_input_hook``,
                         ``feature_output_hook``, optional ``activation``/``k``) + ``layer_{i}.safetensors`` with
                         ``W_enc [d_sae, d_in]`` (note: transposed), ``W_dec [d_sae, d_out]``, ``b_enc``,
                         ``b_dec``, optional ``activation_function.threshold`` and ``W_skip [d_out, d_in]``
=======================  ====================================================================================

Every reader validates keys, shapes and finiteness before returning (same errors as :mod:`.io`).
"""

from __future__ import annotations

import copy
import logging
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor

from .base import Dictionary, DictionaryConfig, dtype_name
from .errors import DictionaryConfigError, DictionaryFormatError, DictionaryNotFoundError
from .hooknames import block_hook, to_canonical
from .io import atomic_folder, read_json, read_safetensors, validate_tensors
from .registry import get_class
from .topk import BatchTopKOptions, TopKOptions

logger = logging.getLogger(__name__)


def _build(arch: str, cfg: DictionaryConfig, tensors: dict[str, Tensor], where: str,
           options: Any = None) -> Dictionary:
    cls = get_class(arch)
    model = cls(cfg, options)
    validate_tensors(tensors, model.expected_saved_shapes(), where=where, description=f"converted {arch} dictionary")
    model.load_saved_tensors(tensors)
    return model.eval()


# ---------------------------------------------------------------------------------------------------- Gemma Scope
def load_gemma_scope(path: str | Path, *, hook_name: str | None = None, model_name: str | None = None,
                     hook_name_out: str | None = None) -> Dictionary:
    """A Gemma Scope JumpReLU SAE (or transcoder, when ``hook_name_out`` is given) from ``params.npz``."""
    path = Path(path)
    if not path.is_file():
        raise DictionaryNotFoundError(f"no such file: {path}")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DictionaryFormatError(f"{path} is not a readable .npz archive: {e}") from e
    tensors = {("W_" + k[2:] if k.startswith("w_") else k): torch.from_numpy(v.astype(np.float32)) for k, v in
               arrays.items()}
    if "W_enc" not in tensors or "W_dec" not in tensors or tensors["W_enc"].dim() != 2:
        raise DictionaryFormatError(f"{path}: expected W_enc/W_dec/b_enc/b_dec/threshold, found {sorted(arrays)}")
    d_in, d_sae = tensors["W_enc"].shape
    transcoder = hook_name_out is not None
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, d_out=tensors["W_dec"].shape[-1] if transcoder else None,
                           hook_name=hook_name, hook_name_out=hook_name_out, model_name=model_name,
                           apply_b_dec_to_input=False, transcoder=transcoder)
    return _build("jumprelu", cfg, tensors, str(path))


# ---------------------------------------------------------------------------------------------------- sparsify
def _sparsify_hooks(name: str, transcode: bool) -> tuple[str | None, str | None]:
    m = re.search(r"layers[._](\d+)(.*)$", name)
    if not m:
        return None, None
    layer, rest = int(m.group(1)), m.group(2)
    if transcode or "mlp" in rest:
        return block_hook(layer, "mlp_in"), block_hook(layer, "mlp_out")
    return block_hook(layer, "resid_post"), None


def load_sparsify(folder: str | Path, *, hook_name: str | None = None, hook_name_out: str | None = None,
                  model_name: str | None = None) -> Dictionary:
    """An EleutherAI sparsify TopK SAE or transcoder folder (``cfg.json`` + ``sae.safetensors``).

    Hook names default from the folder name (``layers.6`` -> ``blocks.6.resid_post``; ``layers.6.mlp`` ->
    ``blocks.6.mlp_in`` / ``blocks.6.mlp_out``).
    """
    folder = Path(folder)
    if not (folder / "cfg.json").is_file():
        raise DictionaryNotFoundError(f"{folder} has no cfg.json")
    cfg = read_json(folder / "cfg.json")
    if cfg.get("activation", "topk") != "topk":
        raise DictionaryFormatError(f"{folder}: sparsify activation {cfg.get('activation')!r} is not supported")
    try:
        d_in = int(cfg["d_in"])
        d_sae = int(cfg.get("num_latents") or d_in * int(cfg.get("expansion_factor", 32)))
        k = int(cfg.get("k", 32))
    except (KeyError, TypeError, ValueError) as e:
        raise DictionaryFormatError(f"{folder}/cfg.json: missing or invalid field {e}") from e
    transcode, skip = bool(cfg.get("transcode", False)), bool(cfg.get("skip_connection", False))
    raw = read_safetensors(folder / "sae.safetensors")
    expected = {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if skip:
        expected["W_skip"] = (d_in, d_in)
    validate_tensors(raw, expected, where=str(folder / "sae.safetensors"), description="sparsify sparse coder")
    default_in, default_out = _sparsify_hooks(folder.name, transcode)
    dcfg = DictionaryConfig(
        d_in=d_in, d_sae=d_sae, hook_name=hook_name or default_in, model_name=model_name,
        hook_name_out=(hook_name_out or default_out) if transcode else None, dtype=dtype_name(raw["W_dec"].dtype),
        transcoder=transcode, apply_b_dec_to_input=not transcode, skip_connection=skip,
    )
    tensors = {"W_enc": raw["encoder.weight"].T, "b_enc": raw["encoder.bias"], "W_dec": raw["W_dec"],
               "b_dec": raw["b_dec"]}
    if skip:
        tensors["W_skip"] = raw["W_skip"]
    return _build("topk", dcfg, tensors, str(folder), TopKOptions(k=k))


# ------------------------------------------------------------------------------------------------ dictionary_learning
_DL_LAYOUTS: dict[str, set[str]] = {
    "AutoEncoder": {"encoder.weight", "encoder.bias", "decoder.weight", "bias"},
    "AutoEncoderNew": {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"},
    "AutoEncoderTopK": {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold"},
    "JumpReluAutoEncoder": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "GatedAutoEncoder": {"encoder.weight", "decoder.weight", "decoder_bias", "r_mag", "gate_bias", "mag_bias"},
}


def _dl_class(keys: set[str], config_class: str | None, path: Path) -> str:
    for name, layout in _DL_LAYOUTS.items():
        if keys == layout:
            if name == "AutoEncoderTopK" and config_class == "BatchTopKSAE":
                return "BatchTopKSAE"
            return name
    raise DictionaryFormatError(
        f"{path}: state dict keys {sorted(keys)} match no known dictionary_learning class; known layouts: "
        + "; ".join(f"{n}: {sorted(k)}" for n, k in _DL_LAYOUTS.items())
    )


def load_dictionary_learning(path: str | Path, *, hook_name: str | None = None, model_name: str | None = None,
                             dict_class: str | None = None) -> Dictionary:
    """A dictionary_learning ``ae.pt`` (loaded with ``weights_only=True``; never unpickles arbitrary objects).

    A sibling ``config.json`` (written by dictionary_learning's trainer) supplies the class, layer and model name
    when present; ``dict_class="BatchTopKSAE"`` tells BatchTopK from TopK files without one. JumpReLU and Gated
    files scale latents by decoder norms at encode time; that scaling is folded into the weights here, so
    ``encode`` returns the same values as dictionary_learning's ``encode``.
    """
    path = Path(path)
    if not path.is_file():
        raise DictionaryNotFoundError(f"no such file: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DictionaryFormatError(f"{path} cannot be read as a weights-only torch state dict: {e}") from e
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise DictionaryFormatError(f"{path} does not hold a state dict of tensors")
    trainer: dict[str, Any] = {}
    if (path.parent / "config.json").is_file():
        trainer = read_json(path.parent / "config.json").get("trainer", {}) or {}
    kind = _dl_class(set(sd), dict_class or trainer.get("dict_class"), path)
    layer = trainer.get("layer")
    hook_name = hook_name or (block_hook(int(layer), "resid_post") if isinstance(layer, int) else None)
    model_name = model_name or trainer.get("lm_name")
    sd = {k: v.float() for k, v in sd.items()}
    if kind in ("JumpReluAutoEncoder", "GatedAutoEncoder"):
        return _dl_norm_folded(kind, sd, hook_name, model_name, path)
    w_enc, b_enc, w_dec = sd["encoder.weight"].T, sd["encoder.bias"], sd["decoder.weight"].T
    d_in, d_sae = w_enc.shape
    apply_b = kind != "AutoEncoderNew"
    b_dec = {"AutoEncoder": "bias", "AutoEncoderNew": "decoder.bias"}.get(kind, "b_dec")
    tensors = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": sd[b_dec]}
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, hook_name=hook_name, model_name=model_name,
                           apply_b_dec_to_input=apply_b)
    if kind in ("AutoEncoder", "AutoEncoderNew"):
        return _build("relu", cfg, tensors, str(path))
    k = int(sd["k"].item())
    if kind == "AutoEncoderTopK":
        return _build("topk", cfg, tensors, str(path), TopKOptions(k=k))
    tensors["threshold"] = sd["threshold"].reshape(()).expand(d_sae)
    return _build("batchtopk", cfg, tensors, str(path), BatchTopKOptions(k=float(k)))


def _dl_norm_folded(kind: str, sd: dict[str, Tensor], hook_name: str | None, model_name: str | None,
                    path: Path) -> Dictionary:
    if kind == "JumpReluAutoEncoder":
        w_enc, w_dec = sd["W_enc"], sd["W_dec"]  # (D, S), (S, D)
    else:
        w_enc, w_dec = sd["encoder.weight"].T, sd["decoder.weight"].T
    norms = w_dec.norm(dim=1)  # (S,)
    if not bool((norms > 0).all()):
        raise DictionaryFormatError(f"{path}: a decoder row has zero norm; cannot fold decoder norms")
    d_in, d_sae = w_enc.shape
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, hook_name=hook_name, model_name=model_name,
                           apply_b_dec_to_input=kind == "GatedAutoEncoder")
    tensors = {"W_enc": w_enc * norms, "W_dec": w_dec / norms[:, None]}
    if kind == "JumpReluAutoEncoder":
        tensors.update(b_enc=sd["b_enc"] * norms, b_dec=sd["b_dec"], threshold=sd["threshold"] * norms)
        return _build("jumprelu", cfg, tensors, str(path))
    tensors.update(b_dec=sd["decoder_bias"], b_gate=sd["gate_bias"] * norms, b_mag=sd["mag_bias"] * norms,
                   r_mag=sd["r_mag"])
    return _build("gated", cfg, tensors, str(path))


# ---------------------------------------------------------------------------------------------------- circuit-tracer
CT_ACTIVATIONS = ("relu", "topk", "jumprelu")


def save_transcoder_set(transcoders: Sequence[Dictionary], folder: str | Path, *, model_name: str | None = None,
                        feature_input_hook: str = "mlp.hook_in", feature_output_hook: str = "hook_mlp_out",
                        repo_id: str | None = None) -> Path:
    """Write per-layer transcoders (layer ``i`` = ``transcoders[i]``) as a circuit-tracer transcoder set.

    Hook names are written in TransformerLens spelling (``mlp.hook_in`` is the normalised MLP input, mechscope's
    ``mlp_in``). Normalisation and feature scale are folded into the exported weights. ``repo_id`` is recorded for
    circuit-tracer's hub loader; the folder can be uploaded as is.
    """
    if not transcoders:
        raise DictionaryConfigError("save_transcoder_set needs at least one transcoder")
    first = transcoders[0]
    for i, tc in enumerate(transcoders):
        if not tc.cfg.transcoder or tc.architecture not in CT_ACTIVATIONS:
            raise DictionaryConfigError(f"transcoders[{i}] is a {tc.architecture} dictionary (transcoder="
                                        f"{tc.cfg.transcoder}); circuit-tracer sets hold relu/topk/jumprelu "
                                        "transcoders")
        if tc.architecture != first.architecture or tc.d_sae != first.d_sae:
            raise DictionaryConfigError("every transcoder of a set needs the same architecture and d_sae")
        if tc.hook_name is not None and not tc.hook_name.startswith(f"blocks.{i}."):
            raise DictionaryConfigError(
                f"transcoders[{i}] reads {tc.hook_name!r}; entry {i} of a set must read block {i}"
            )
    config: dict[str, Any] = {
        "model_name": model_name or first.model_name,
        "model_kind": "transcoder_set",
        "feature_input_hook": feature_input_hook,
        "feature_output_hook": feature_output_hook,
    }
    if repo_id:
        config["repo_id"] = repo_id
    if first.architecture == "topk":
        config.update(activation="topk", k=cast(TopKOptions, first.options).k)
    elif first.architecture == "relu":
        config["activation"] = "relu"
    config["mechscope"] = {"format_version": 1, "n_layers": len(transcoders), "dtype": dtype_name(first.dtype)}
    with atomic_folder(Path(folder)) as tmp:
        for i, tc in enumerate(transcoders):
            tc = copy.deepcopy(tc)
            tc.fold_activation_norm()
            tc.fold_feature_scale()
            t = tc.saved_tensors()
            out = {"W_enc": t["W_enc"].T, "W_dec": t["W_dec"], "b_enc": t["b_enc"], "b_dec": t["b_dec"]}
            if "threshold" in t:
                out["activation_function.threshold"] = t["threshold"]
            if "W_skip" in t:
                out["W_skip"] = t["W_skip"]
            save_file({k: v.detach().cpu().contiguous() for k, v in out.items()}, str(tmp / f"layer_{i}.safetensors"))
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Path(folder)


def _ct_hook(layer: int, hook: str) -> str | None:
    return to_canonical(f"blocks.{layer}.{hook}")


def load_transcoder_set(folder: str | Path) -> list[Dictionary]:
    """Read a circuit-tracer transcoder set folder; entry ``i`` is the transcoder of block ``i``."""
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise DictionaryNotFoundError(f"{folder} has no config.yaml")
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise DictionaryFormatError(f"{folder}/config.yaml is not valid YAML: {e}") from e
    if not isinstance(config, dict) or config.get("model_kind") != "transcoder_set":
        raise DictionaryFormatError(f"{folder}/config.yaml: expected model_kind: transcoder_set")
    if "transcoders" in config:
        files = [Path(p) if Path(p).is_absolute() else folder / p for p in config["transcoders"]]
        if any(str(p).startswith("hf:") for p in config["transcoders"]):
            raise DictionaryFormatError(f"{folder}: hub paths in 'transcoders'; download the files first")
    else:
        found = {int(m.group(1)): p for p in folder.glob("layer_*.safetensors")
                 if (m := re.fullmatch(r"layer_(\d+)\.safetensors", p.name))}
        if not found or set(found) != set(range(len(found))):
            raise DictionaryFormatError(f"{folder}: expected layer_0..layer_N.safetensors, "
                                        f"found layers {sorted(found)}")
        files = [found[i] for i in range(len(found))]
    out = [load_transcoder_file(file, layer, config) for layer, file in enumerate(files)]
    logger.info("loaded %d circuit-tracer transcoders from %s", len(out), folder)
    return out


def load_transcoder_file(file: str | Path, layer: int, config: dict[str, Any], *, model_name: str | None = None
                         ) -> Dictionary:
    """One transcoder of a circuit-tracer set: ``layer_{i}.safetensors`` (layout in the module docstring) or a
    Gemma Scope ``params.npz`` listed by the set's ``config.yaml``; hooks from ``feature_input_hook`` /
    ``feature_output_hook``."""
    file = Path(file)
    hook_in = _ct_hook(layer, config.get("feature_input_hook", "mlp.hook_in"))
    hook_out = _ct_hook(layer, config.get("feature_output_hook", "hook_mlp_out"))
    model_name = model_name or config.get("model_name")
    if file.suffix == ".npz":
        return load_gemma_scope(file, hook_name=hook_in, hook_name_out=hook_out, model_name=model_name)
    raw = read_safetensors(file)
    if "W_enc" not in raw or raw["W_enc"].dim() != 2 or "W_dec" not in raw:
        raise DictionaryFormatError(f"{file}: expected W_enc [d_sae, d_in] and W_dec [d_sae, d_out]")
    d_sae, d_in = raw["W_enc"].shape
    activation = config.get("activation")
    arch = "jumprelu" if "activation_function.threshold" in raw else ("topk" if activation == "topk" else "relu")
    raw.pop("k", None)
    cfg = DictionaryConfig(d_in=d_in, d_sae=d_sae, d_out=raw["W_dec"].shape[-1], transcoder=True,
                           apply_b_dec_to_input=False, skip_connection="W_skip" in raw, hook_name=hook_in,
                           hook_name_out=hook_out, model_name=model_name, dtype=dtype_name(raw["W_enc"].dtype))
    tensors = {("threshold" if k == "activation_function.threshold" else k): v for k, v in raw.items()}
    tensors["W_enc"] = raw["W_enc"].T
    if arch == "topk" and not isinstance(config.get("k"), int):
        raise DictionaryFormatError(f"{file}: the set's config.yaml says activation topk but gives no integer k")
    options = TopKOptions(k=config["k"]) if arch == "topk" else None
    return _build(arch, cfg, tensors, str(file), options)


# ---------------------------------------------------------------------------------------------------- Llama Scope
def load_llama_scope(folder: str | Path, *, model_name: str | None = None) -> Dictionary:
    """A Llama Scope SAE folder: ``hyperparams.json`` + ``checkpoints/final.safetensors`` (``encoder.weight
    [d_sae, d_in]``, ``encoder.bias``, ``decoder.weight [d_out, d_sae]``, ``decoder.bias``; JumpReLU with the scalar
    ``jump_relu_threshold``). Dataset-wise normalisation (inputs scaled by ``sqrt(d_model) / norm_in``, outputs
    by ``sqrt(d_model) / norm_out`` during training) is folded into the weights, so the dictionary reads and
    writes the model's own activations."""
    folder = Path(folder)
    hp = read_json(folder / "hyperparams.json")
    raw = read_safetensors(folder / "checkpoints" / "final.safetensors")
    try:
        d_model, d_sae, threshold = int(hp["d_model"]), int(hp["d_sae"]), float(hp["jump_relu_threshold"])
        hook_in, hook_out = hp["hook_point_in"], hp.get("hook_point_out", hp["hook_point_in"])
    except (KeyError, TypeError, ValueError) as e:
        raise DictionaryFormatError(f"{folder}/hyperparams.json: missing or invalid field {e}") from e
    expected = {"encoder.weight": (d_sae, d_model), "encoder.bias": (d_sae,), "decoder.weight": (d_model, d_sae),
                "decoder.bias": (d_model,)}
    validate_tensors(raw, expected, where=str(folder / "checkpoints" / "final.safetensors"),
                     description="Llama Scope SAE")
    norm = hp.get("norm_activation", "dataset-wise")
    c_in = c_out = 1.0
    if norm == "dataset-wise":
        avg = hp.get("dataset_average_activation_norm") or {}
        try:
            c_in, c_out = d_model ** 0.5 / float(avg["in"]), d_model ** 0.5 / float(avg.get("out", avg["in"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            raise DictionaryFormatError(f"{folder}/hyperparams.json: dataset-wise normalisation needs "
                                        f"dataset_average_activation_norm.in/out ({e})") from e
    elif norm not in ("none", None):
        raise DictionaryFormatError(f"{folder}/hyperparams.json: norm_activation {norm!r} is not supported")
    f32 = {k: v.float() for k, v in raw.items()}
    tensors = {"W_enc": f32["encoder.weight"].T * c_in, "b_enc": f32["encoder.bias"],
               "W_dec": f32["decoder.weight"].T / c_out, "b_dec": f32["decoder.bias"] / c_out,
               "threshold": torch.full((d_sae,), threshold)}
    canon_in, canon_out = to_canonical(hook_in), to_canonical(hook_out)
    transcoder = canon_out != canon_in
    cfg = DictionaryConfig(d_in=d_model, d_sae=d_sae, d_out=d_model if transcoder else None, transcoder=transcoder,
                           hook_name=canon_in, hook_name_out=canon_out if transcoder else None,
                           model_name=model_name, apply_b_dec_to_input=False)
    return _build("jumprelu", cfg, tensors, str(folder))


__all__ = ["load_dictionary_learning", "load_llama_scope", "load_transcoder_file", "load_gemma_scope", "load_sparsify",
           "load_transcoder_set", "save_transcoder_set"]
