"""The guided tour: the mechscope workflow on a built-in model, written up as one HTML report.

Each step is a function taking the shared :class:`TourContext` and adding one report section, so steps can be
added as capabilities land and each finding sits next to the code that produced it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .html import Report, esc

if TYPE_CHECKING:
    from ..models.hooked import HookedModel

log = logging.getLogger(__name__)

IOI_PROMPT = "When Mary and John went to the store, John gave a drink to"


@dataclass
class TourConfig:
    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id of the model to explore."""
    out: str = "runs/tour"
    """Folder for the report and everything the tour computes (reused when the tour runs again)."""
    quick: bool = False
    """Smaller settings for CI: fewer prompts, shorter sequences."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must name a model")


@dataclass
class TourContext:
    config: TourConfig
    model: HookedModel
    report: Report
    out: Path
    findings: dict[str, Any] = field(default_factory=dict)


def _time(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def step_model(ctx: TourContext) -> None:
    m = ctx.model
    c = m.cfg
    s = ctx.report.section("1. The model and its hook points")
    s.text(f"<code>{esc(c.name)}</code> is a {esc(c.family)}-family model loaded through Hugging Face "
           f"<code>transformers</code>; mechscope attaches PyTorch hooks to HF's own modules, so every number below "
           f"is the real model's computation. It exposes {len(m.hook_names())} canonical hook points.")
    s.table(["property", "value"], [("layers", c.n_layers), ("d_model", c.d_model),
                                    ("heads / KV heads", f"{c.n_heads} / {c.n_kv_heads}"), ("d_head", c.d_head),
                                    ("d_mlp", c.d_mlp), ("vocabulary", c.d_vocab), ("context", c.n_ctx),
                                    ("BOS prepended by default", c.default_prepend_bos)])
    s.table(["hook kind", "example name"], [(k, f"blocks.0.{k}") for k in m.namespace.block_kinds]
            + [("global", "embed, final_norm, logits")])
    completion = m.generate("The capital of France is", max_new_tokens=6)
    ctx.findings["completion"] = completion
    s.text(f"Greedy completion of <code>The capital of France is</code>: <code>{esc(completion)}</code>")


def step_extract(ctx: TourContext) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = ctx.model
    n = m.cfg.n_layers
    tokens = m.tokenize([IOI_PROMPT] * (2 if ctx.config.quick else 8))
    resid_names = [f"blocks.{l}.resid_post" for l in range(n)]
    reps = 2 if ctx.config.quick else 5
    with torch.inference_mode():
        t_hf = _time(lambda: m.hf(input_ids=tokens.input_ids), reps)
        t_all = _time(lambda: m.run_with_cache(tokens, names=resid_names), reps)
        early = max(1, n // 6)  # a sixth of the way in, whatever the depth
        t_early = _time(lambda: m.run_with_cache(tokens, names=[f"blocks.{early}.resid_post"]), reps)
        _, cache = m.run_with_cache(tokens, names=resid_names)
    norms = cache.stack("resid_post")[:, 0].norm(dim=-1)  # (L, T)
    s = ctx.report.section("2. Extract: caching activations")
    s.text("<code>run_with_cache</code> records only the hook points asked for and stops the forward pass after "
           "the deepest one. Timings on this machine (one batch, mean of a few runs):")
    s.table(["what", "seconds", "vs plain HF forward"],
            [("plain HF forward", t_hf, 1.0), (f"cache all {n} resid_post", t_all, t_hf / t_all),
             (f"cache blocks.{early}.resid_post (stops after block {early})", t_early, t_hf / t_early)])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    # log colour scale: the first token's residual (an attention sink) is orders of magnitude larger
    im = ax.imshow(norms.numpy(), aspect="auto", cmap="viridis", norm=matplotlib.colors.LogNorm())
    ax.set_xticks(range(tokens.input_ids.shape[1]), m.to_str_tokens(tokens.input_ids[0]), rotation=60, fontsize=7)
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label="‖resid_post‖")
    s.figure(fig, "Norm of the residual stream after each block, per token of the IOI prompt (log scale)")
    ctx.findings["early_stop_speedup"] = t_hf / t_early


def default_steps() -> list[Callable[[TourContext], None]]:
    """The tour's steps in order (imported here: the step modules import this one)."""
    from .tour_decompose import step_features, step_train
    from .tour_intervene import step_heads, step_ioi, step_lens
    from .tour_trace import step_graph

    return [step_model, step_extract, step_lens, step_ioi, step_heads, step_train, step_features, step_graph]


def run_tour(config: TourConfig) -> Path:
    """Run every step and write ``<out>/report.html``; returns its path."""
    from ..models.loading import load_model

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(config.model)
    report = Report(f"mechscope guided tour — {config.model}",
                    intro="Generated by <code>mechscope tour</code>. Every figure is computed on the real model, "
                          "offline, on this machine.")
    ctx = TourContext(config, model, report, out)
    for step in tqdm(default_steps(), desc="tour", unit="step"):
        log.info("tour step %s", step.__name__)
        step(ctx)
    _write_findings(ctx.findings, out / "findings.json")
    return report.write(out / "report.html")


def _write_findings(findings: dict[str, object], path: Path) -> None:
    """The tour's headline numbers as JSON (numbers, strings, and lists / dicts of them; anything else, such as a
    path, as its string), written atomically."""
    import json

    from ..files import atomic_write_text

    def plain(v: object) -> object:
        if isinstance(v, (int, float, str, bool)) or v is None:
            return v
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return str(v)

    atomic_write_text(path, json.dumps({k: plain(v) for k, v in findings.items()}, indent=1, sort_keys=True))
