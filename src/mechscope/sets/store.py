"""Finding, checking and loading a cached transcoder set.

Layout of ``$MECHSCOPE_HOME/dictionaries/<model>/transcoders/`` (``set_dir``)::

    manifest.json       written last, atomically: model, widths, layers, settings, eval summary, sha256 per file
    saelens/layer_LL/   one SAELens folder per layer (cfg.json + sae_weights.safetensors)
    circuit_tracer/     the same transcoders as a circuit-tracer transcoder set (config.yaml + layer_L.safetensors)
    eval.json           per layer FVU, CE loss recovered spliced alone, L0, dead fraction; the whole replacement model
    run/                the training run (metrics.jsonl; checkpoints while it trains)

A folder without ``manifest.json`` is a build in progress (``find_transcoder_set`` returns None). A manifest for
another model, with other widths, or whose files are missing or do not match their checksums raises
:class:`TranscoderSetError` naming the file, so a stale or foreign set is never used silently.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dictionaries import Dictionary, DictionaryError, load
from ..files import sha256_file
from ..models.builtin import cache_root

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class TranscoderSetError(ValueError):
    """A cached transcoder set cannot be used (corrupt, incomplete or built for another model)."""


def set_dir(model_name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where the transcoder set of ``model_name`` lives under ``root`` (default ``$MECHSCOPE_HOME``)."""
    base = Path(root) if root is not None else cache_root()
    return base / "dictionaries" / model_name.replace("/", "--") / "transcoders"


def file_checksums(folder: Path, subfolders: tuple[str, ...] = ("saelens", "circuit_tracer")) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``subfolders`` of ``folder``."""
    out = {}
    for sub in subfolders:
        for p in sorted((folder / sub).rglob("*")):
            if p.is_file():
                out[p.relative_to(folder).as_posix()] = sha256_file(p)
    return out


@dataclass
class TranscoderSet:
    """A checked transcoder set on disk; :meth:`transcoders` loads the per-layer dictionaries."""

    folder: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def n_layers(self) -> int:
        return int(self.manifest["n_layers"])

    @property
    def circuit_tracer_dir(self) -> Path:
        return self.folder / "circuit_tracer"

    def layer_dir(self, layer: int) -> Path:
        return self.folder / "saelens" / f"layer_{layer:02d}"

    def transcoders(self) -> list[Dictionary]:
        """The per-layer transcoders (entry L reads ``blocks.L.mlp_in``), in eval mode."""
        out = []
        for layer in range(self.n_layers):
            try:
                out.append(load(self.layer_dir(layer)).eval())
            except (DictionaryError, OSError) as e:
                raise TranscoderSetError(f"{self.layer_dir(layer)}: cannot load the layer-{layer} transcoder: {e}"
                                         ) from e
        return out

    def eval(self) -> dict[str, Any]:
        """``eval.json`` (per layer and whole-replacement metrics) as a dict."""
        return json.loads((self.folder / "eval.json").read_text())


def check_set(folder: Path, model_name: str | None = None, *, d_model: int | None = None,
              n_layers: int | None = None, verify: bool = True) -> TranscoderSet:
    """The set in ``folder`` after checking its manifest, model, widths and (``verify``) file checksums."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TranscoderSetError(f"{path}: not a readable transcoder-set manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise TranscoderSetError(f"{path}: unknown format (expected format_version {FORMAT_VERSION})")
    for key in ("model", "d_model", "n_layers", "files"):
        if key not in manifest:
            raise TranscoderSetError(f"{path}: missing field {key!r}")
    if model_name is not None and manifest["model"] != model_name:
        raise TranscoderSetError(f"{path}: built for model {manifest['model']!r}, not {model_name!r}")
    for name, want in (("d_model", d_model), ("n_layers", n_layers)):
        if want is not None and int(manifest[name]) != want:
            raise TranscoderSetError(f"{path}: {name} {manifest[name]} does not match the model's {want}")
    for rel, digest in manifest["files"].items():
        file = folder / rel
        if not file.is_file():
            raise TranscoderSetError(f"{file}: listed in {path} but missing")
        if verify and sha256_file(file) != digest:
            raise TranscoderSetError(f"{file}: checksum does not match {path} (corrupt or changed)")
    return TranscoderSet(folder, manifest)


def find_transcoder_set(model: Any, folder: str | os.PathLike[str] | None = None, *, verify: bool = True
                        ) -> TranscoderSet | None:
    """The transcoder set of ``model`` (a HookedModel or a model name), or None when none is built.

    ``folder`` is the set's folder (default: :func:`set_dir` of the model). Raises :class:`TranscoderSetError`
    (naming the file) when one exists but is corrupt, unfinished-but-claimed or for another model.
    """
    name = model if isinstance(model, str) else model.cfg.name
    folder = Path(folder) if folder is not None else set_dir(name)
    if not (folder / MANIFEST).exists():
        if (folder / "run").exists():
            log.info("%s holds an unfinished build (no %s): not used", folder, MANIFEST)
        return None
    kw: dict[str, Any] = {}
    if not isinstance(model, str):
        kw = {"d_model": int(model.cfg.d_model), "n_layers": int(model.cfg.n_layers)}
    return check_set(folder, name, verify=verify, **kw)
