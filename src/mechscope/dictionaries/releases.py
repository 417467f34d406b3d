"""The registry of public dictionary releases loadable by name (:func:`mechscope.dictionaries.load_pretrained`).

Each :class:`Release` names a Hugging Face repository, the model it was trained on, where it reads (canonical hook
points), the file layout, and the ids it holds. Names follow SAELens' ``pretrained_saes.yaml`` where SAELens has the
release (``gemma-scope-2b-pt-res``, ``llama_scope_lxr_8x``, ``gpt2-small-res-jb``); circuit-tracer's transcoder sets
are named ``circuit-tracer-<model>``. Repository ids and folder layouts are those of the public releases:

==================  =======================================================================================
layout              files, per id
==================  =======================================================================================
``gemma_scope``     ``layer_{L}/width_{W}/average_l0_{N}/params.npz`` (JumpReLU; ``canonical`` picks the variant
                    whose average L0 is closest to 100, found in the repository's file list)
``llama_scope``     ``Llama3_1-8B-Base-L{L}{S}-{E}x/hyperparams.json`` + ``.../checkpoints/final.safetensors``
                    (JumpReLU with one scalar threshold, dataset-wise input normalisation folded into the weights)
``saelens``         ``{folder}/cfg.json`` + ``{folder}/sae_weights.safetensors`` (read as a SAELens folder)
``circuit_tracer``  ``config.yaml`` (``model_kind: transcoder_set``) + ``layer_{L}.safetensors``, or a
                    ``transcoders:`` list of ``hf://`` files (Gemma Scope ``params.npz`` for Gemma-2-2B)
==================  =======================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GEMMA_SCOPE_ID = re.compile(r"^layer_(\d+)/width_(\w+)/(average_l0_\d+|canonical)$")
LLAMA_SCOPE_ID = re.compile(r"^l(\d+)([a-z]+)_(\d+)x$")
LAYER_ID = re.compile(r"^layer_(\d+)$")
BLOCK_ID = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post)$")


@dataclass(frozen=True)
class Release:
    """A public release of dictionaries (SAEs or transcoders) for one model."""

    name: str
    """Registry name: the first argument of ``load_pretrained``."""
    repo_id: str
    """Hugging Face repository holding the files."""
    model: str
    """Hub id of the model the dictionaries were trained on."""
    layout: str
    """``gemma_scope``, ``llama_scope``, ``saelens`` or ``circuit_tracer`` (module docstring)."""
    kind: str
    """``sae``, ``transcoder`` or ``transcoder set``."""
    hook: str
    """Canonical hook point, ``{L}`` for the layer (``blocks.{L}.resid_post``; transcoders ``in -> out``)."""
    n_layers: int
    """Layers of the model covered (ids exist for layers ``0..n_layers-1``)."""
    ids: str
    """The id pattern (``layer_{L}/width_{W}/average_l0_{N}``), shown by ``mechscope dictionaries list``."""
    widths: tuple[str, ...] = ()
    """Known widths (Gemma Scope ``16k``, ``65k``, ...)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Layout details: Llama Scope ``site`` (R/A/M) and ``expansion``; fixed ``folders`` for SAELens ids."""
    description: str = ""

    def hook_names(self, layer: int) -> tuple[str, str | None]:
        """(input hook, output hook or None) of the dictionary at ``layer``."""
        src, _, dst = self.hook.partition(" -> ")
        return src.format(L=layer), (dst.format(L=layer) if dst else None)

    def example_ids(self) -> list[str]:
        """Ids to show (and to match a mistyped id against): every layer, the first few variants."""
        layers = range(self.n_layers)
        if self.layout == "gemma_scope":
            return [f"layer_{L}/width_{w}/canonical" for L in layers for w in self.widths]
        if self.layout == "llama_scope":
            return [f"l{L}{self.extra['site'].lower()}_{self.extra['expansion']}x" for L in layers]
        if self.layout == "saelens":
            return list(self.extra["folders"].split(","))
        return ["all", *(f"layer_{L}" for L in layers)]


def _gemma_scope(size: str, site: str, hook: str, n_layers: int, widths: tuple[str, ...], model: str,
                 kind: str = "sae", canonical: bool = False) -> Release:
    repo = f"google/gemma-scope-{size}-pt-{site}"
    name = repo.split("/")[1] + ("-canonical" if canonical else "")
    ids = "layer_{L}/width_{W}/canonical" if canonical else "layer_{L}/width_{W}/average_l0_{N} | .../canonical"
    return Release(name, repo, model, "gemma_scope", kind, hook, n_layers, ids, widths,
                   description=f"Gemma Scope {kind}s on {hook.split('.')[-1]} of {model.split('/')[1]} (JumpReLU)")


def _llama_scope(site: str, expansion: int, hook: str) -> Release:
    return Release(f"llama_scope_lx{site.lower()}_{expansion}x", f"fnlp/Llama3_1-8B-Base-LX{site}-{expansion}x",
                   "meta-llama/Llama-3.1-8B", "llama_scope", "sae", hook, 32, f"l{{L}}{site.lower()}_{expansion}x",
                   extra={"site": site, "expansion": str(expansion)},
                   description=f"Llama Scope {expansion}x SAEs ({expansion * 4096 // 1024}k latents), JumpReLU")


def _circuit_tracer(name: str, repo: str, model: str, n_layers: int, hook_out: str = "mlp_out") -> Release:
    return Release(name, repo, model, "circuit_tracer", "transcoder set",
                   "blocks.{L}.mlp_in -> blocks.{L}." + hook_out, n_layers, "all | layer_{L}",
                   description=f"circuit-tracer per-layer transcoders for {model.split('/')[1]}")


RES, MLP, ATT = "blocks.{L}.resid_post", "blocks.{L}.mlp_out", "blocks.{L}.attn.z"
G2, G9 = "google/gemma-2-2b", "google/gemma-2-9b"
RES_WIDTHS_2B = ("16k", "32k", "65k", "131k", "262k", "524k", "1m")

RELEASES: dict[str, Release] = {r.name: r for r in [
    _gemma_scope("2b", "res", RES, 26, RES_WIDTHS_2B, G2),
    _gemma_scope("2b", "res", RES, 26, ("16k", "65k", "262k", "1m"), G2, canonical=True),
    _gemma_scope("2b", "mlp", MLP, 26, ("16k", "65k"), G2),
    _gemma_scope("2b", "mlp", MLP, 26, ("16k", "65k"), G2, canonical=True),
    _gemma_scope("2b", "att", ATT, 26, ("16k", "65k"), G2),
    _gemma_scope("2b", "att", ATT, 26, ("16k", "65k"), G2, canonical=True),
    _gemma_scope("2b", "transcoders", "blocks.{L}.mlp_in -> blocks.{L}.mlp_out", 26, ("16k",), G2, "transcoder"),
    _gemma_scope("9b", "res", RES, 42, ("16k", "131k"), G9),
    _gemma_scope("9b", "mlp", MLP, 42, ("16k", "131k"), G9),
    _gemma_scope("9b", "att", ATT, 42, ("16k", "131k"), G9),
    _llama_scope("R", 8, "blocks.{L}.resid_post"),
    _llama_scope("R", 32, "blocks.{L}.resid_post"),
    _llama_scope("A", 8, "blocks.{L}.attn_out"),
    _llama_scope("A", 32, "blocks.{L}.attn_out"),
    _llama_scope("M", 8, "blocks.{L}.mlp_out"),
    _llama_scope("M", 32, "blocks.{L}.mlp_out"),
    _circuit_tracer("circuit-tracer-gemma-2-2b", "mwhanna/gemma-scope-transcoders", G2, 26),  # circuit-tracer "gemma"
    _circuit_tracer("circuit-tracer-llama-3.2-1b", "mntss/transcoder-Llama-3.2-1B", "meta-llama/Llama-3.2-1B", 16),
    _circuit_tracer("circuit-tracer-qwen3-0.6b", "mwhanna/qwen3-0.6b-transcoders-lowl0", "Qwen/Qwen3-0.6B", 28),
    _circuit_tracer("circuit-tracer-qwen3-1.7b", "mwhanna/qwen3-1.7b-transcoders-lowl0", "Qwen/Qwen3-1.7B", 28),
    _circuit_tracer("circuit-tracer-qwen3-4b", "mwhanna/qwen3-4b-transcoders", "Qwen/Qwen3-4B", 36),
    _circuit_tracer("circuit-tracer-qwen3-8b", "mwhanna/qwen3-8b-transcoders", "Qwen/Qwen3-8B", 36),
    _circuit_tracer("circuit-tracer-qwen3-14b", "mwhanna/qwen3-14b-transcoders-lowl0", "Qwen/Qwen3-14B", 40),
    Release("gpt2-small-res-jb", "jbloom/GPT2-Small-SAEs-Reformatted", "openai-community/gpt2", "saelens", "sae",
            "blocks.{L}.resid_pre", 12, "blocks.{L}.hook_resid_pre | blocks.11.hook_resid_post",
            extra={"folders": ",".join([*(f"blocks.{L}.hook_resid_pre" for L in range(12)),
                                        "blocks.11.hook_resid_post"]),
                   # SAELens' config_overrides: trained on TransformerLens' centred stream (fold_input_centring)
                   "center_writing_weights": "true"},
            description="Joseph Bloom's GPT-2 small residual-stream SAEs (ReLU, 24576 latents; trained on "
                        "TransformerLens' centred residual stream, folded into the encoder on load)"),
]}
"""Every known release, by name."""
