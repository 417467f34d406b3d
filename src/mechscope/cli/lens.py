"""``mechscope lens``: logit lens (and a trained tuned lens) over every layer × position of a prompt.

Writes OUT/lens.json (top token and its probability, probability and rank of the target, KL to the final
distribution, per layer × position), heatmaps OUT/lens.png (top tokens) and OUT/target.png (probability of the
target), OUT/kl.png, the same for the tuned lens when one is given, and OUT/report.html with all of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .options import add_dataclass_options, dataclass_from_args

ANNOTATE_MAX_POSITIONS = 48  # write the top token into each cell up to this many positions


@dataclass
class LensCliConfig:
    """Logit / tuned lens from the command line."""

    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    tuned: str | None = None
    """Trained tuned-lens file (safetensors written by TunedLens.save or train_tuned_lens) to show next to the
    logit lens."""
    target: str | None = None
    """Token (exactly one) whose probability is mapped per layer × position; default: the model's final
    prediction at the last position."""
    top_k: int = 5
    """Top tokens listed per layer at the last position."""
    out: str = "runs/lens"
    """Output folder: lens.json, lens.png, target.png, kl.png (tuned_*.png with --tuned), report.html."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"--top-k must be in 1..(vocabulary size), got {self.top_k}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lens", help="logit lens / tuned lens per layer × position",
                       description="Decode the residual stream entering every block of PROMPT through the final "
                                   "norm and unembedding (logit lens; with --tuned also through a trained tuned "
                                   "lens): top token and probability per layer × position, and how early the "
                                   "final prediction appears. The last row is the model's own output.")
    p.add_argument("prompt", help="the prompt text")
    add_dataclass_options(p, LensCliConfig)
    p.set_defaults(run=run)


def summarise(lens, target: int, k: int) -> dict:
    """JSON-ready per layer × position summary of a :class:`LensResult` (first prompt)."""
    model = lens.model
    probs = lens.logits[:, 0].float().softmax(-1)  # (L+1, T, V)
    top_p, top_ids = probs.max(-1)  # (L+1, T)
    kl = lens.kl_to_final()[:, 0]  # (L+1, T)
    return {"top_token": [[model.to_string([i]) for i in row] for row in top_ids.tolist()],
            "top_token_id": top_ids, "top_prob": top_p, "target_prob": probs[..., target],
            "target_rank_last": lens.rank(target), "kl_to_final": kl, "mean_kl": kl.mean(-1),
            "top_k_last": [[{"token": t, "prob": p} for t, p in row] for row in lens.top_k(k)]}


def top_token_figure(summary: dict, rows: list[str], cols: list[str], title: str):
    """Heatmap of the top token's probability with the token written into each cell."""
    import torch

    from ..display.figures import heatmap

    probs = torch.as_tensor(summary["top_prob"])
    fig = heatmap(probs, rows, cols, title=title, colorbar_label="probability of the top token", diverging=False)
    fig.axes[0].images[0].set_clim(0.0, 1.0)  # probabilities on one fixed scale
    if len(cols) <= ANNOTATE_MAX_POSITIONS:
        fig.set_size_inches(max(5.0, 0.8 * len(cols) + 2.5), max(3.0, 0.28 * len(rows) + 1.5))
        ax = fig.axes[0]
        for r, row in enumerate(summary["top_token"]):
            for c, tok in enumerate(row):
                ax.text(c, r, repr(tok)[1:-1][:8], ha="center", va="center", fontsize=6,
                        color="black" if float(probs[r, c]) > 0.6 else "white")
    return fig


def run(args: argparse.Namespace) -> int:
    import mechscope as ms

    from ..display.figures import heatmap
    from ..lens import TunedLens, logit_lens
    from .outputs import token_label, write_json, write_page, write_png

    cfg = dataclass_from_args(LensCliConfig, args)
    if not args.prompt:
        raise ValueError("the prompt must not be empty")
    model = ms.load_model(cfg.model)
    vocab = int(model.W_U.shape[-1])
    if cfg.top_k > vocab:
        raise ValueError(f"--top-k must be in 1..{vocab} (the size of the model's vocabulary), got {cfg.top_k}")
    tuned = TunedLens.load(cfg.tuned) if cfg.tuned else None
    lenses = {"logit_lens": logit_lens(model, args.prompt)}
    if tuned is not None:
        lenses["tuned_lens"] = tuned(model, args.prompt)
    plain = lenses["logit_lens"]
    target = (model.to_single_token(cfg.target) if cfg.target is not None
              else int(plain.logits[-1, 0, -1].argmax()))
    target_str = model.to_string([target])
    tokens = model.to_str_tokens(plain.tokens.input_ids[0])
    cols = [token_label(i, s) for i, s in enumerate(tokens)]
    rows = plain.layer_labels
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data: dict = {"command": "lens", "model": cfg.model, "prompt": args.prompt, "tokens": tokens, "layers": rows,
                  "target": target_str, "target_id": target, "tuned": cfg.tuned,
                  "note": "rows L0..L{n-1} decode resid_pre of each block, 'final' is the model's own output; "
                          "target_rank_last: rank (0 = top) of the target at the last position"}
    written, figures, table = [], [], []
    for key, lens in lenses.items():
        prefix = "" if key == "logit_lens" else "tuned_"
        summary = summarise(lens, target, cfg.top_k)
        data[key] = summary
        fig = top_token_figure(summary, rows, cols, f"{lens.name}: top token per layer × position")
        written.append(write_png(out / f"{prefix}lens.png", fig))
        figures.append((fig, f"{lens.name}: top token and its probability"))
        fig = heatmap(summary["target_prob"], rows, cols, diverging=False, title=f"{lens.name}: p({target_str!r})",
                      colorbar_label="probability")
        fig.axes[0].images[0].set_clim(0.0, 1.0)
        written.append(write_png(out / f"{prefix}target.png", fig))
        figures.append((fig, f"{lens.name}: probability of {target_str!r} per layer × position"))
        ranks = summary["target_rank_last"].tolist()
        first = next((rows[i] for i, r in enumerate(ranks) if r == 0), "never")
        table.append((lens.name, first, f"{float(summary['mean_kl'][0]):.3f}",
                      f"{float(summary['mean_kl'][-2]):.3f}" if len(rows) > 1 else "n/a"))
    fig = plain.plot_kl(other=lenses.get("tuned_lens"))
    written.append(write_png(out / "kl.png", fig))
    figures.append((fig, "Mean KL to the final distribution per layer"))
    path = write_json(out / "lens.json", data)
    page = write_page(out / "report.html", "mechscope lens",
                      f"prompt: {args.prompt!r}; target: {target_str!r} (the rank and probability of the target "
                      f"are shown per layer).", figures,
                      [("Summary", ["lens", f"first layer where {target_str!r} is top at the last position",
                                    "mean KL at L0", "mean KL before the last block"], table)])
    for name, first, *_ in table:
        print(f"{name}: {target_str!r} first becomes the top prediction at the last position at {first}")
    for p in (path, *written, page):
        print(p.resolve())
    return 0
