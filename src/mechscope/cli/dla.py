"""``mechscope dla``: direct logit attribution of a prediction to every layer's attention and MLP, and every head.

Writes OUT/dla.json (every component's contribution, per-layer sums, the layers × heads table and the bias term,
which add up to the logit or logit difference), OUT/layers.png (bar chart per layer), OUT/heads.png (layers × heads
heatmap) and OUT/report.html.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .options import add_dataclass_options, dataclass_from_args


@dataclass
class DlaCliConfig:
    """Direct logit attribution from the command line."""

    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    answer: str | None = None
    """Token (exactly one) whose logit is attributed; default: the model's top prediction at --pos."""
    wrong: str | None = None
    """Competing token (exactly one): attribute logit(answer) - logit(wrong) instead of logit(answer)."""
    pos: int = -1
    """Position whose prediction is attributed (negative counts from the end)."""
    top: int = 10
    """Largest components listed in the summary."""
    out: str = "runs/dla"
    """Output folder: dla.json, layers.png, heads.png, report.html."""

    def __post_init__(self) -> None:
        if self.top < 1:
            raise ValueError(f"--top must be at least 1, got {self.top}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dla", help="direct logit attribution per layer and per head",
                       description="Split the logit of the answer (or the answer-minus-wrong logit difference) at "
                                   "one position of PROMPT into the direct contributions of the embeddings, every "
                                   "attention head and every MLP, through the final norm with its scale frozen. "
                                   "The contributions plus the bias term add up to the logit.")
    p.add_argument("prompt", help="the prompt text")
    add_dataclass_options(p, DlaCliConfig)
    p.set_defaults(run=run)


def per_layer(values: dict[str, float], n_layers: int, n_heads: int) -> dict[str, list[float]]:
    """Attention (heads plus attention bias) and MLP contribution of every layer."""
    attn = [sum(values[f"L{l}H{h}"] for h in range(n_heads)) + values.get(f"L{l}_attn_bias", 0.0)
            for l in range(n_layers)]
    return {"attn": attn, "mlp": [values[f"L{l}_mlp"] for l in range(n_layers)]}


def layer_bars(embed: float, layers: dict[str, list[float]], title: str):
    """Grouped bar chart: the embeddings, then attention and MLP of every layer."""
    from matplotlib.figure import Figure

    n = len(layers["attn"])
    fig = Figure(figsize=(max(6.0, 0.3 * n + 3), 3.5))
    ax = fig.add_subplot()
    xs = list(range(1, n + 1))
    ax.bar([0], [embed], width=0.8, color="#777777", label="embeddings")
    ax.bar([x - 0.2 for x in xs], layers["attn"], width=0.4, color="#3a6ea5", label="attention")
    ax.bar([x + 0.2 for x in xs], layers["mlp"], width=0.4, color="#d08a2c", label="MLP")
    ax.axhline(0, color="black", linewidth=0.6)
    labels = ["emb"] + [f"L{l}" for l in range(n)]
    step = max(1, len(labels) // 40 + 1) if len(labels) > 40 else 1
    ax.set_xticks(list(range(0, len(labels), step)), labels[::step], rotation=90, fontsize=7)
    ax.set_ylabel("direct contribution")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def run(args: argparse.Namespace) -> int:
    import torch

    import mechscope as ms

    from ..lens import direct_logit_attribution
    from .outputs import token_label, write_json, write_page, write_png

    cfg = dataclass_from_args(DlaCliConfig, args)
    model = ms.load_model(cfg.model)
    tokens = model.tokenize(args.prompt)
    t = tokens.input_ids.shape[1]
    if not -t <= cfg.pos < t:
        raise ValueError(f"--pos {cfg.pos} is out of range: the prompt has {t} tokens (use 0..{t - 1} or -{t}..-1)")
    with torch.no_grad():
        logits = model(tokens)[0, cfg.pos]  # (V,)
    answer = model.to_single_token(cfg.answer) if cfg.answer is not None else int(logits.argmax())
    wrong = model.to_single_token(cfg.wrong) if cfg.wrong is not None else None
    if wrong == answer:
        raise ValueError(f"--answer and --wrong are the same token {model.to_string([answer])!r}; the difference "
                         f"would be zero")
    res = direct_logit_attribution(model, tokens, answer, wrong, pos=cfg.pos, split_heads=True)
    n, h = res.n_layers, res.n_heads
    values = {lab: float(v) for lab, v in zip(res.labels, res.values[:, 0])}
    embed = values["embed"] + values.get("pos_embed", 0.0)
    layers = per_layer(values, n, h)
    heads = res.heads()
    a_str = model.to_string([answer])
    w_str = None if wrong is None else model.to_string([wrong])
    what = f"logit({a_str!r})" if wrong is None else f"logit({a_str!r}) - logit({w_str!r})"
    model_value = float(logits[answer] - (0 if wrong is None else logits[wrong]))
    total, bias, summed = float(res.total[0]), float(res.bias[0]), sum(values.values())
    str_tokens = model.to_str_tokens(tokens.input_ids[0])
    data = {"command": "dla", "model": cfg.model, "prompt": args.prompt, "tokens": str_tokens,
            "pos": cfg.pos % t, "answer": a_str, "answer_id": answer, "wrong": w_str, "wrong_id": wrong,
            "metric": "logit" if wrong is None else "logit_diff",
            "note": "components + bias = total (the pre-soft-cap logit or logit difference through the final norm "
                    "with its cached scale); model_value is what the model outputs (equal unless the model "
                    "soft-caps its logits)",
            "total": total, "bias": bias, "components_sum": summed, "model_value": model_value,
            "components": values, "embed": embed, "layers": [f"L{l}" for l in range(n)], **layers,
            "heads": heads.values, "top": [[lab, v] for lab, v in res.top(cfg.top)]}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    target = f"{what} at {token_label(cfg.pos % t, str_tokens[cfg.pos])}"
    bars = layer_bars(embed, layers, f"DLA of {what}")
    heat = heads.plot(title=f"DLA per head: {what}")
    written = [write_json(out / "dla.json", data), write_png(out / "layers.png", bars),
               write_png(out / "heads.png", heat)]
    page = write_page(out / "report.html", "mechscope dla",
                      f"prompt: {args.prompt!r}; {target} = {total:.3f}, of which the bias term is {bias:.3f}.",
                      [(bars, "Direct contribution of the embeddings and of each layer's attention and MLP"),
                       (heat, "Direct contribution of each head (layers × heads)")],
                      [("Largest components", ["component", "contribution"],
                        [(lab, f"{v:+.3f}") for lab, v in res.top(cfg.top)])])
    print(f"{target}: {total:.3f} = components {summed:.3f} + bias {bias:.3f}")
    print("largest: " + ", ".join(f"{lab} {v:+.3f}" for lab, v in res.top(min(cfg.top, 5))))
    for p in (*written, page):
        print(p.resolve())
    return 0
