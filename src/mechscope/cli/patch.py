"""``mechscope patch``: activation patching of a clean prompt into a corrupted one, layers × positions (or heads).

Writes OUT/results.json (raw metric, effect and normalised effect of every cell), one heatmap PNG per swept hook
kind (OUT/heatmap_<kind>.png) and OUT/report.html with all of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .options import add_dataclass_options, dataclass_from_args

POSITION_DEFAULT = ("resid_pre", "attn_out", "mlp_out")
HEAD_DEFAULT = ("attn.z",)


@dataclass
class PatchConfig:
    """Activation patching from the command line."""

    clean: str
    """Clean prompt (the behaviour you want to explain)."""
    corrupt: str
    """Corrupted prompt with the same number of tokens (e.g. one name or fact swapped)."""
    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    answer: str | None = None
    """Correct next token after the clean prompt (one token); default: the clean run's top prediction."""
    wrong: str | None = None
    """Competing next token (one token); default: the corrupted run's top prediction, or the clean run's second
    choice when both runs predict the answer."""
    hooks: list[str] | None = None
    """Hook kinds swept over every layer, e.g. resid_pre attn_out mlp_out (default), or with --heads a per-head
    kind: attn.z (default), attn.q, attn.k, attn.v, attn.pattern."""
    heads: bool = False
    """Sweep layers × heads instead of layers × positions."""
    head_position: int | None = None
    """With --heads: the position whose head outputs are patched (negative counts from the end); default: every
    position at once."""
    layers: list[int] | None = None
    """Layers to sweep; default: all."""
    positions: list[int] | None = None
    """Positions to sweep (negative counts from the end); default: all."""
    direction: Literal["denoise", "noise"] = "denoise"
    """denoise: run the corrupted prompt and patch in clean activations; noise: the other way round."""
    batch_size: int = 64
    """Patched variants per forward pass (memory grows with it)."""
    out: str = "runs/patch"
    """Output folder: results.json, heatmap_<kind>.png per swept kind, report.html."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.heads and self.positions is not None:
            raise ValueError("--positions applies to position sweeps; with --heads use --head-position")
        if not self.heads and self.head_position is not None:
            raise ValueError("--head-position needs --heads")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patch", help="activation patching sweep (layers × positions or heads)",
                       description="Patch activations of the clean prompt into the corrupted run (denoising), one "
                                   "layer × position (or layer × head) cell at a time, and measure how much of the "
                                   "clean logit difference (answer minus wrong token at the last position) each "
                                   "cell restores: 0 = none, 1 = all. Writes OUT/results.json, heatmaps and "
                                   "OUT/report.html.")
    add_dataclass_options(p, PatchConfig)
    p.set_defaults(run=run)


def hook_kinds(model, cfg: PatchConfig) -> list[str]:
    """The canonical hook kinds to sweep; raises naming the valid ones."""
    from ..interventions.patching import HEAD_KINDS
    from ..models.hook_points import normalise_kind

    available = model.namespace.block_kinds
    valid = [k for k in available if k in (*HEAD_KINDS, "attn.pattern")] if cfg.heads else list(available)
    requested = cfg.hooks or list(HEAD_DEFAULT if cfg.heads else POSITION_DEFAULT)
    kinds: list[str] = []
    for name in requested:
        kind = normalise_kind(name)
        if kind not in valid:
            what = "per-head hook kinds (--heads)" if cfg.heads else "hook kinds"
            raise ValueError(f"unknown hook {name!r}; valid {what} for this model: {', '.join(valid)} "
                             f"(every layer is swept; choose layers with --layers)")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def choose_answers(model, cfg: PatchConfig, clean_logits, corrupt_logits) -> tuple[int, int]:
    """Token ids of the answer and the wrong token (given, or read off the unpatched runs)."""
    if cfg.answer is not None:
        answer = model.to_single_token(cfg.answer)
    else:
        answer = int(clean_logits[0, -1].argmax())
    if cfg.wrong is not None:
        wrong = model.to_single_token(cfg.wrong)
    else:
        wrong = int(corrupt_logits[0, -1].argmax())
        if wrong == answer:
            wrong = int(clean_logits[0, -1].topk(2).indices[1])
    if answer == wrong:
        raise ValueError(f"--answer and --wrong are the same token {model.to_string([answer])!r}; the logit "
                         f"difference would be zero everywhere")
    return answer, wrong


def run(args: argparse.Namespace) -> int:
    import torch

    import mechscope as ms

    from ..display.figures import heatmap
    from ..interventions import logit_diff, patch_sweep
    from ..interventions.patching import check_matched
    from .outputs import write_json, write_page, write_png

    cfg = dataclass_from_args(PatchConfig, args)
    model = ms.load_model(cfg.model)
    kinds = hook_kinds(model, cfg)
    clean_t, corrupt_t = model.tokenize(cfg.clean), model.tokenize(cfg.corrupt)
    check_matched(clean_t, corrupt_t, model)  # one line naming both tokenisations when the lengths differ
    t = clean_t.input_ids.shape[1]
    for p in cfg.positions or []:
        if not -t <= p < t:
            raise ValueError(f"position {p} is out of range: the prompts have {t} tokens (use 0..{t - 1} or "
                             f"-{t}..-1)")
    with torch.no_grad():
        clean_logits, corrupt_logits = model(clean_t), model(corrupt_t)
    answer, wrong = choose_answers(model, cfg, clean_logits, corrupt_logits)
    metric = logit_diff(answer, wrong)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps: dict[str, dict] = {}
    figures, rows, pngs = [], [], []
    clean_m = corrupt_m = None
    for kind in kinds:
        res = patch_sweep(model, clean_t, corrupt_t, metric, kind=kind, axis="head" if cfg.heads else "pos",
                          layers=cfg.layers, positions=cfg.positions, pos=cfg.head_position,
                          direction=cfg.direction, batch_size=cfg.batch_size)
        clean_m, corrupt_m = res.clean, res.corrupted
        effect = res.delta()
        defined = abs(clean_m - corrupt_m) > 1e-6 * max(1.0, abs(clean_m))
        norm = res.normalized() if defined else None
        shown = norm if norm is not None else effect
        r, c = divmod(int(shown.abs().argmax()), shown.shape[1])
        sweeps[kind] = {"axis": "head" if cfg.heads else "pos", "rows": res.row_labels, "cols": res.col_labels,
                        "values": res.values, "effect": effect, "normalized": norm,
                        "strongest": {"row": res.row_labels[r], "col": res.col_labels[c],
                                      "effect": float(effect[r, c]),
                                      "normalized": None if norm is None else float(norm[r, c])}}
        label = "fraction of the logit difference restored" if norm is not None else "logit difference change"
        fig = heatmap(shown, res.row_labels, res.col_labels, title=f"patching {kind} ({cfg.direction})",
                      colorbar_label=label)
        pngs.append(write_png(out / f"heatmap_{kind}.png", fig))
        figures.append((fig, f"{kind}: {label} per {'layer × head' if cfg.heads else 'layer × position'}"))
        rows.append((kind, res.row_labels[r], res.col_labels[c], f"{float(effect[r, c]):+.3f}",
                     "n/a" if norm is None else f"{float(norm[r, c]):.3f}"))
    a_str, w_str = model.to_string([answer]), model.to_string([wrong])
    data = {"command": "patch", "model": cfg.model, "clean": cfg.clean, "corrupt": cfg.corrupt,
            "clean_tokens": model.to_str_tokens(clean_t.input_ids[0]),
            "corrupt_tokens": model.to_str_tokens(corrupt_t.input_ids[0]),
            "answer": a_str, "answer_id": answer, "wrong": w_str, "wrong_id": wrong,
            "metric": "logit_diff", "metric_note": "logit(answer) - logit(wrong) at the last position; effect = "
            "patched - corrupted run; normalized = effect / (clean - corrupted), null when clean == corrupted",
            "direction": cfg.direction, "clean_metric": clean_m, "corrupted_metric": corrupt_m, "sweeps": sweeps}
    results = write_json(out / "results.json", data)
    page = write_page(out / "report.html", "mechscope patch",
                      f"clean: {cfg.clean!r}; corrupted: {cfg.corrupt!r}; metric: logit({a_str!r}) - "
                      f"logit({w_str!r}) at the last position = {clean_m:.3f} clean, {corrupt_m:.3f} corrupted "
                      f"({cfg.direction}).",
                      figures, [("Strongest cell per hook kind", ["hook", "layer", "cell", "effect", "normalised"],
                                 rows)])
    print(f"logit({a_str!r}) - logit({w_str!r}): clean {clean_m:.3f}, corrupted {corrupt_m:.3f}"
          + ("" if abs(clean_m - corrupt_m) > 1e-6 * max(1.0, abs(clean_m))
             else " (equal: normalised effects are undefined, showing raw changes)"))
    for kind, row in zip(kinds, rows):
        print(f"  {kind}: strongest {row[1]} {row[2]} (effect {row[3]}, normalised {row[4]})")
    for path in (results, *pngs, page):
        print(path.resolve())
    return 0
