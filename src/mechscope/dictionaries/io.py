"""Save and load dictionaries in the SAELens folder layout (``cfg.json`` + ``sae_weights.safetensors``).

``cfg.json`` holds exactly the fields SAELens (>= 6) reads: ``architecture``, ``d_in``, ``d_sae``, ``dtype``,
``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, the architecture's own
fields (``k``, ``d_out``, ``n_layers`` ...) and ``metadata`` (``model_name``, ``hook_name`` in TransformerLens
spelling, ``sae_lens_version`` ...). Everything mechscope needs beyond that lives under the ``"mechscope"`` key,
which SAELens ignores: the registry architecture, the full config with canonical hook names, the options and the
list of extra tensors (``norm_scale_in``, ``norm_scale_out``, ``feature_scale``).

A dictionary with extra tensors is not loadable by SAELens as-is: SAELens (checked against 6.54) refuses the folder
loudly (``Unexpected key(s) in state_dict: "feature_scale", "norm_scale_in", ...``); it never reads it wrongly. The
default keeps the buffers so that mechscope round trips stay bit-exact (bfloat16 files included); call
``fold_activation_norm()`` / ``fold_feature_scale()`` first, or ``save(..., fold=True)``, for a plain file that
computes the same function (within float rounding) and that SAELens reads. ``bench/interop_saelens.py`` checks both
directions against a real SAELens install.

Reading SAELens files follows SAELens' semantics, including TopK files with ``rescale_acts_by_decoder_norm: true``
(what SAELens' TopK training writes by default): the decoder-norm rescaling is folded into the weights on load.

Saving is atomic: files are written and fsynced in a temporary sibling folder which is then renamed into place.
Loading validates everything (architecture, keys, shapes, dtypes, finiteness) before a dictionary is returned.
Nothing is ever unpickled.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .. import files
from ..files import atomic_folder
from .base import EXTRAS, Dictionary, DictionaryConfig, dtype_name, set_saver
from .errors import DictionaryConfigError, DictionaryFormatError, DictionaryNotFoundError, UnknownArchitectureError
from .hooknames import to_canonical, to_transformer_lens
from .registry import get_class

logger = logging.getLogger(__name__)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
FORMAT_VERSION = 1
#: Written as ``metadata.sae_lens_version``: marks the cfg.json as the SAELens >= 6 layout (not a SAELens install).
SAE_LENS_LAYOUT_VERSION = "6.0.0"

_TC = {"transcoder": True, "apply_b_dec_to_input": False}
#: SAELens ``architecture`` -> (mechscope class name, config overrides, options)
SAE_LENS_ARCHITECTURES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "standard": ("relu", {}, {}),
    "topk": ("topk", {}, {}),
    "batchtopk": ("batchtopk", {}, {}),
    "jumprelu": ("jumprelu", {}, {}),
    "gated": ("gated", {}, {}),
    "transcoder": ("relu", _TC, {}),
    "skip_transcoder": ("relu", {**_TC, "skip_connection": True}, {}),
    "jumprelu_transcoder": ("jumprelu", _TC, {}),
    "jumprelu_skip_transcoder": ("jumprelu", {**_TC, "skip_connection": True}, {}),
    "jumprelu_clt": ("clt", _TC, {"activation": "jumprelu"}),
}


# ---------------------------------------------------------------------------------------------------- saving
def config_dict(d: Dictionary) -> dict[str, Any]:
    """The ``cfg.json`` content for ``d`` (see module docstring)."""
    c = d.cfg
    meta: dict[str, Any] = {
        "model_name": c.model_name,
        "hook_name": to_transformer_lens(c.hook_name),
        "hook_head_index": None,
        "sae_lens_version": SAE_LENS_LAYOUT_VERSION,
        "sae_lens_training_version": SAE_LENS_LAYOUT_VERSION,
    }
    if c.transcoder:
        meta.update(hook_name_out=to_transformer_lens(c.hook_name_out), hook_head_index_out=None)
    dtype = dtype_name(d.dtype)
    return {
        "architecture": d.sae_lens_architecture(),
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": dtype,
        "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **d.sae_lens_fields(),
        "metadata": meta,
        "mechscope": {
            "format_version": FORMAT_VERSION,
            "architecture": d.architecture,
            "config": {**asdict(c), "dtype": dtype},
            "options": asdict(d.options),
            "extras": [name for name in EXTRAS if getattr(d, name) is not None],
        },
    }


def save(d: Dictionary, folder: str | os.PathLike[str], *, fold: bool = False) -> Path:
    """Write ``d`` to ``folder`` atomically; an existing dictionary folder there is replaced.

    ``fold=True`` saves a copy with activation normalisation and feature scale folded into the weights (a plain
    SAELens file). Raises :class:`DictionaryFormatError` for non-finite weights or a non-dictionary target folder.
    """
    if fold:
        d = copy.deepcopy(d)
        d.fold_activation_norm()
        d.fold_feature_scale()
    folder = Path(folder)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in d.saved_tensors().items()}
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise DictionaryFormatError(f"refusing to save non-finite (NaN/inf) values in {', '.join(bad)}")
    if folder.exists() and not folder.is_dir():
        raise DictionaryFormatError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not any((folder / f).exists() for f in (CFG_FILE, WEIGHTS_FILE)):
        raise DictionaryFormatError(f"refusing to replace {folder}: it is not empty and holds no dictionary")
    with atomic_folder(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CFG_FILE).write_text(json.dumps(config_dict(d), indent=2))
    logger.info("saved %s dictionary to %s", d.architecture, folder)
    extras = [name for name in EXTRAS if getattr(d, name) is not None]
    if extras:
        logger.info("%s holds mechscope-only tensors %s: SAELens refuses it; save(..., fold=True) writes a copy "
                    "SAELens reads", folder, ", ".join(extras))
    return folder


set_saver(save)  # Dictionary.save(folder) is save(dictionary, folder); base cannot import io (io imports base)


# ---------------------------------------------------------------------------------------------------- loading
def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object file; :class:`DictionaryFormatError` for invalid JSON."""
    data: dict[str, Any] = files.read_json(path, expect=dict, error=DictionaryFormatError)
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file; :class:`DictionaryFormatError` if it is truncated or corrupt."""
    if not path.is_file():
        raise DictionaryNotFoundError(f"missing weights file {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError depending on the damage
        raise DictionaryFormatError(f"{path} is truncated or corrupt: {e}") from e


def validate_tensors(tensors: dict[str, Tensor], expected: dict[str, tuple[int, ...]], *, where: str,
                     description: str) -> None:
    """Check keys, shapes, float dtypes and finiteness; one :class:`DictionaryFormatError` listing every problem."""
    problems = []
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    for key in sorted(set(expected) & set(tensors)):
        t = tensors[key]
        if tuple(t.shape) != tuple(expected[key]):
            problems.append(f"{key} has shape {tuple(t.shape)}, expected {tuple(expected[key])}")
        elif not t.is_floating_point():
            problems.append(f"{key} has dtype {t.dtype}, expected a floating-point dtype")
        elif not bool(torch.isfinite(t).all()):
            n_nan, n_inf = int(t.isnan().sum()), int(t.isinf().sum())
            problems.append(f"{key} holds {n_nan} NaN and {n_inf} inf values")
    if problems:
        raise DictionaryFormatError(
            f"{where}: {'; '.join(problems)}. A {description} has keys "
            + ", ".join(f"{k} {tuple(v)}" for k, v in expected.items())
        )


def _known(cls: type, data: dict[str, Any], what: str, where: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DictionaryFormatError(f"{where}: unknown {what} {unknown}; valid: {sorted(names)}")
    return data


#: Options that define what a dictionary computes: a cfg.json must state them (no silent default).
REQUIRED_OPTIONS: dict[str, tuple[str, ...]] = {"topk": ("k",), "batchtopk": ("k",), "crosscoder": ("n_layers",),
                                                "clt": ("n_layers", "activation")}
#: Top-level (SAELens) fields of a mechscope cfg.json that must agree with its "mechscope" block.
_MIRRORED = ("architecture", "d_in", "d_sae", "d_out", "dtype", "apply_b_dec_to_input", "normalize_activations",
             "k", "n_layers", "rescale_acts_by_decoder_norm", "include_skip_connection")


def _require_options(arch: str, given: dict[str, Any], where: str, place: str) -> None:
    missing = [k for k in REQUIRED_OPTIONS.get(arch, ()) if k not in given]
    if missing:
        raise DictionaryFormatError(f"{where}: a {arch} dictionary must state {', '.join(map(repr, missing))} "
                                    f"({place}); it defines what the dictionary computes, so no default is assumed")


def check_consistent(raw: dict[str, Any], d: Dictionary, where: str) -> None:
    """Refuse a mechscope cfg.json whose top-level (SAELens) fields contradict its ``mechscope`` block.

    SAELens reads the top level, mechscope the block: when they disagree (an edited file, a file assembled from
    two dictionaries) the two readers would compute different functions, so neither is chosen silently.
    """
    expected = config_dict(d)
    conflicts = [f"{key}: {raw[key]!r} at the top level, {expected[key]!r} in the mechscope block"
                 for key in _MIRRORED if key in raw and key in expected and raw[key] != expected[key]]
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    for key, mine in (("model_name", d.cfg.model_name), ("hook_name", d.cfg.hook_name),
                      ("hook_name_out", d.cfg.hook_name_out if d.cfg.transcoder else None)):
        theirs = meta.get(key)
        if theirs is None or mine is None:
            continue
        same = theirs == mine if key == "model_name" else to_canonical(theirs) == mine
        if not same:
            conflicts.append(f"metadata.{key}: {theirs!r} at the top level, {mine!r} in the mechscope block")
    if conflicts:
        raise DictionaryFormatError(f"{where}: conflicting fields ({'; '.join(conflicts)}); fix the file so both "
                                    f"agree (saving the dictionary again writes a consistent one)")


def parse_config(cfg: dict[str, Any], where: str = CFG_FILE) -> tuple[type[Dictionary], DictionaryConfig, Any,
                                                                       tuple[str, ...]]:
    """``cfg.json`` content -> (class, config, options, extras). Handles mechscope and plain SAELens files."""
    ms = cfg.get("mechscope")
    try:
        if isinstance(ms, dict):
            cls = get_class(ms.get("architecture", ""))
            for part in ("config", "options"):
                if not isinstance(ms.get(part, {}), dict):
                    raise DictionaryFormatError(f"{where}: mechscope.{part} must be a JSON object")
            _require_options(cls.architecture, dict(ms.get("options", {})), where, "in mechscope.options")
            dcfg = DictionaryConfig(**_known(DictionaryConfig, dict(ms.get("config", {})), "config fields", where))
            options = cls.Options(**_known(cls.Options, dict(ms.get("options", {})), "options", where))
            extras = tuple(ms.get("extras", ()))
            if not set(extras) <= set(EXTRAS):
                raise DictionaryFormatError(f"{where}: unknown extras {sorted(set(extras) - set(EXTRAS))}")
            return cls, dcfg, options, extras
        return _parse_sae_lens(cfg, where)
    except TypeError as e:  # a required field missing
        raise DictionaryFormatError(f"{where}: {e}") from e
    except DictionaryConfigError as e:
        raise DictionaryFormatError(f"{where}: {e}") from e


def _parse_sae_lens(cfg: dict[str, Any], where: str) -> tuple[type[Dictionary], DictionaryConfig, Any,
                                                                tuple[str, ...]]:
    arch = cfg.get("architecture", "standard")
    if arch not in SAE_LENS_ARCHITECTURES:
        raise UnknownArchitectureError(
            f"{where}: SAELens architecture {arch!r} is not supported; readable architectures: "
            + ", ".join(SAE_LENS_ARCHITECTURES)
        )
    name, overrides, option_values = SAE_LENS_ARCHITECTURES[arch]
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None, False):
        raise DictionaryFormatError(
            f"{where}: normalize_activations={norm!r} is applied outside the file by SAELens; fold the scaling "
            "factor into the weights (SAELens fold_activation_norm_scaling_factor) and save again"
        )
    if cfg.get("rescale_acts_by_decoder_norm") and arch != "topk":  # SAELens reads it for TopK only
        raise DictionaryFormatError(
            f"{where}: rescale_acts_by_decoder_norm=True on a {arch!r} file: SAELens reads this field for topk only; "
            "remove it, or fold the decoder norms into the weights"
        )
    if cfg.get("finetuning_scaling_factor"):
        raise DictionaryFormatError(f"{where}: finetuning_scaling_factor is not supported")
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int):
            raise DictionaryFormatError(f"{where}: missing or non-integer {key!r}")
    meta = cfg.get("metadata") or cfg.get("meta") or {}
    hook = meta.get("hook_name", cfg.get("hook_name", cfg.get("hook_point")))
    values: dict[str, Any] = {
        "d_in": cfg["d_in"], "d_sae": cfg["d_sae"], "dtype": str(cfg.get("dtype", "float32")),
        "model_name": meta.get("model_name", cfg.get("model_name")),
        "hook_name": to_canonical(hook),
        "hook_name_out": to_canonical(meta.get("hook_name_out", cfg.get("hook_name_out"))),
        "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True)),
        **overrides,
    }
    if "d_out" in cfg and overrides.get("transcoder"):
        values["d_out"] = cfg["d_out"]
    cls = get_class(name)
    options = dict(option_values)
    if name == "topk":
        _require_options("topk", cfg, where, 'a top-level "k"')
        options["k"] = cfg["k"]
    if name == "clt":
        options["n_layers"] = cfg.get("n_layers", 1)
    return cls, DictionaryConfig(**values), cls.Options(**options), ()


def fold_decoder_norms(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Weights of a SAELens TopK file with ``rescale_acts_by_decoder_norm=True`` as a plain TopK dictionary.

    SAELens multiplies such a file's pre-activations by the decoder row norms ``n`` before the top-k and divides the
    activations by ``n`` before decoding. ``W_enc * n``, ``b_enc * n`` and ``W_dec / n`` compute the same latents
    and reconstruction with the rescaling folded in (what SAELens' ``save_inference_model`` does to the weights of
    a TopK training SAE, whose cfg.json still says ``rescale_acts_by_decoder_norm: true``: its decoder rows then
    have unit norm and the fold changes nothing but rounding).
    """
    out = dict(tensors)
    w_dec = tensors["W_dec"].float()
    n = w_dec.norm(dim=-1).clamp_min(1e-8)  # (S,)
    out["W_enc"] = (tensors["W_enc"].float() * n).to(tensors["W_enc"].dtype)
    out["b_enc"] = (tensors["b_enc"].float() * n).to(tensors["b_enc"].dtype)
    out["W_dec"] = (w_dec / n.unsqueeze(-1)).to(tensors["W_dec"].dtype)
    return out


def load_folder(folder: Path) -> Dictionary:
    """Load a mechscope / SAELens folder (``cfg.json`` + ``sae_weights.safetensors``), fully validated."""
    cfg_path = folder / CFG_FILE
    if not cfg_path.is_file():
        raise DictionaryNotFoundError(f"{folder} has no {CFG_FILE}")
    raw = read_json(cfg_path)
    cls, dcfg, options, extras = parse_config(raw, str(cfg_path))
    tensors = read_safetensors(folder / WEIGHTS_FILE)
    model = cls(dcfg, options)
    validate_tensors(tensors, model.expected_saved_shapes(extras), where=str(folder / WEIGHTS_FILE),
                     description=f"{model.architecture} dictionary with {cfg_path.name}'s widths")
    if isinstance(raw.get("mechscope"), dict):
        check_consistent(raw, model, str(cfg_path))
    if not isinstance(raw.get("mechscope"), dict) and raw.get("rescale_acts_by_decoder_norm"):
        tensors = fold_decoder_norms(tensors)
    model.load_saved_tensors(tensors)
    return model.eval()


# ---------------------------------------------------------------------------------------------------- hub
def parse_hub_path(path: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/repo[/sub/folder][@revision]`` -> (repo_id, subfolder or None, revision or None)."""
    if not path.startswith("hf://"):
        raise DictionaryConfigError(f"not a hub path (expected hf://owner/repo/...): {path!r}")
    rest, revision = path[len("hf://"):], None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
        if not revision or "/" in revision:
            raise DictionaryConfigError(f"invalid revision in hub path {path!r}")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise DictionaryConfigError(f"invalid hub path {path!r}: expected hf://owner/repo[/folder][@revision]")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:]) or None, revision


def download_hub(path: str) -> Path:
    """Download a hub folder with ``huggingface_hub.snapshot_download`` and return the local folder."""
    repo_id, sub, revision = parse_hub_path(path)
    try:  # ``sub`` may name a folder or a single file (``.../params.npz``)
        local = snapshot_download(repo_id, revision=revision, allow_patterns=[sub, f"{sub}/*"] if sub else None)
    except Exception as e:  # network, auth, missing repo: one clear error naming what was asked
        raise DictionaryNotFoundError(
            f"could not download {path} (repo {repo_id!r}, folder {sub!r}, revision {revision!r}): {e}"
        ) from e
    target = Path(local) / sub if sub else Path(local)
    if not target.exists():
        raise DictionaryNotFoundError(f"{path}: folder {sub!r} not found in {repo_id}")
    return target


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu", model: Any = None,
         allow_other_model: bool = False, **metadata: Any) -> Dictionary:
    """Load a dictionary from a folder, a file or ``hf://owner/repo/folder``.

    Recognised layouts: mechscope / SAELens folders, EleutherAI sparsify folders (``cfg.json`` + ``sae.safetensors``),
    Gemma Scope ``params.npz`` and dictionary_learning ``ae.pt`` (file or folder holding it). ``metadata``
    (``hook_name=``, ``model_name=``) fills in what foreign formats do not record. Circuit-tracer transcoder sets
    hold one dictionary per layer: use :func:`mechscope.dictionaries.converters.load_transcoder_set`.
    With ``model=`` (a HookedModel), the widths of the recorded hook points are checked against the model and a
    dictionary for another model is refused with :class:`DictionaryShapeError`, and one whose recorded
    ``model_name`` names another model with :class:`DictionaryModelError` (``allow_other_model=True`` accepts it).
    """
    from . import converters

    if isinstance(path, str) and path.startswith("hf://"):
        path = download_hub(path)
    path = Path(path)
    if not path.exists():
        raise DictionaryNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if path.suffix == ".npz":
            d = converters.load_gemma_scope(path, **metadata)
        elif path.suffix in (".pt", ".pth"):
            d = converters.load_dictionary_learning(path, **metadata)
        else:
            raise DictionaryFormatError(f"{path}: expected a dictionary folder, params.npz or ae.pt")
    elif (path / WEIGHTS_FILE).exists() or ((path / CFG_FILE).exists() and not (path / "sae.safetensors").exists()):
        if metadata:
            raise DictionaryConfigError("mechscope/SAELens folders record their own metadata; do not pass any")
        d = load_folder(path)
    elif (path / "sae.safetensors").exists():
        d = converters.load_sparsify(path, **metadata)
    elif (path / "params.npz").exists():
        d = converters.load_gemma_scope(path / "params.npz", **metadata)
    elif (path / "ae.pt").exists():
        d = converters.load_dictionary_learning(path / "ae.pt", **metadata)
    elif (path / "config.yaml").exists():
        raise DictionaryFormatError(f"{path} holds a circuit-tracer transcoder set: use load_transcoder_set()")
    else:
        present = sorted(p.name for p in path.iterdir())[:10]
        raise DictionaryNotFoundError(
            f"{path} holds no dictionary: expected {CFG_FILE} + {WEIGHTS_FILE} (or sae.safetensors, params.npz, "
            f"ae.pt); found {present or 'nothing'}"
        )
    if model is not None:
        from .splice import check_model_compatible

        check_model_compatible(model, d, allow_other_model=allow_other_model)
    return d.to(device)
