"""``mechscope heads``: attention-head detectors (induction, previous-token, duplicate-token, attention sink).

    mechscope heads --model smollm2-135m --detectors induction previous_token --out runs/heads

Scores come from attention patterns on random token sequences repeated twice (see mechscope.heads.detectors):
each is the mean attention a head puts where the behaviour says it should, from 0 to 1. Writes OUT/heads.json
(a layers × heads score table per detector, the top heads and each head's class) and OUT/heads_<detector>.png
heatmaps, and prints the top heads of each detector.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from .options import add_dataclass_options, dataclass_from_args


def _all_kinds() -> list[str]:
    from ..heads import KINDS

    return list(KINDS)


@dataclass
class HeadsConfig:
    """Head detectors from the command line."""

    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    detectors: list[str] = field(default_factory=_all_kinds)
    """Detectors to run: previous_token, induction, duplicate_token, attention_sink."""
    seq_len: int = 20
    """Length of the random token sequence that is repeated (the input has 2 x seq_len tokens, plus BOS)."""
    n_sequences: int = 8
    """Random sequences averaged over."""
    seed: int = 0
    """Seed of the random tokens."""
    top: int = 5
    """Top heads listed per detector."""
    out: str = "runs/heads"
    """Output folder: heads.json and heads_<detector>.png."""

    def __post_init__(self) -> None:
        from ..heads import KINDS

        unknown = [d for d in self.detectors if d not in KINDS]
        if unknown:
            raise ValueError(f"unknown detector{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(KINDS)}")
        if not self.detectors:
            raise ValueError(f"give at least one detector; valid: {', '.join(KINDS)}")
        self.detectors = list(dict.fromkeys(self.detectors))
        if self.seq_len < 2 or self.n_sequences < 1 or self.top < 1:
            raise ValueError(f"need --seq-len >= 2, --n-sequences >= 1 and --top >= 1 (got {self.seq_len}, "
                             f"{self.n_sequences}, {self.top})")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("heads", help="attention-head detectors: layer × head scores and heatmaps",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, HeadsConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import mechscope as ms

    from ..display.figures import heatmap
    from ..heads import HeadScores, head_scores
    from ..heads.detectors import DEFAULT_THRESHOLDS
    from .outputs import write_json, write_png

    cfg = dataclass_from_args(HeadsConfig, args)
    model = ms.load_model(cfg.model)
    if 2 * cfg.seq_len + 1 > model.cfg.n_ctx:
        raise ValueError(f"--seq-len {cfg.seq_len} makes inputs of {2 * cfg.seq_len + 1} tokens but this model's "
                         f"context is {model.cfg.n_ctx}; use --seq-len {(model.cfg.n_ctx - 1) // 2} or less")
    full = head_scores(model, n=cfg.n_sequences, seq_len=cfg.seq_len, seed=cfg.seed)
    scores = HeadScores({k: full.scores[k].float().cpu() for k in cfg.detectors})
    n_layers, n_heads = next(iter(scores.scores.values())).shape
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tops = {k: scores.top(k, cfg.top) for k in cfg.detectors}
    data = {"schema": "mechscope-heads/1", "command": "heads", "model": cfg.model, "n_layers": n_layers,
            "n_heads": n_heads, "seq_len": cfg.seq_len, "n_sequences": cfg.n_sequences, "seed": cfg.seed,
            "note": "scores[detector][layer][head]: mean attention to the detector's target position on random "
                    "tokens repeated twice (0..1); classes: the detector whose score most exceeds its threshold",
            "thresholds": {k: DEFAULT_THRESHOLDS[k] for k in cfg.detectors},
            "scores": {k: v for k, v in scores.scores.items()},
            "top": {k: [{"head": h, "score": s} for h, s in t] for k, t in tops.items()},
            "classes": scores.classify()}
    path = write_json(out / "heads.json", data)
    pngs = []
    for k, v in scores.scores.items():
        fig = heatmap(v, [f"L{layer}" for layer in range(n_layers)], [f"H{h}" for h in range(n_heads)],
                      title=f"{k} score ({cfg.model})", colorbar_label="score", diverging=False)
        pngs.append(write_png(out / f"heads_{k}.png", fig))
    for k, t in tops.items():
        print(f"{k}: " + ", ".join(f"{h} {s:.3f}" for h, s in t))
    for p in (path, *pngs):
        print(p.resolve())
    return 0
