"""``mechscope acdc``: automated circuit discovery over heads and MLPs; writes OUT/edges.json and OUT/circuit.png."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..files import atomic_write_json
from .options import add_dataclass_options, dataclass_from_args


@dataclass
class AcdcCliConfig:
    model: str = "toy-induction"
    """``toy-induction`` (the trained attention-only induction model and its task) or a model name / folder."""
    clean: list[str] = field(default_factory=list)
    """Clean prompts (not for toy-induction); all must have the same number of tokens."""
    corrupt: list[str] = field(default_factory=list)
    """Corrupted prompts, one per clean prompt, same lengths (for resample ablation)."""
    threshold: float = 0.01
    """Remove an edge when the loss rises by less than this."""
    metric: Literal["kl", "logit_diff"] = "kl"
    """kl (to the full model at the scored positions) or logit_diff (needs --answers and --wrong)."""
    answers: list[str] = field(default_factory=list)
    """Correct next tokens at the last position, one per clean prompt (logit_diff)."""
    wrong: list[str] = field(default_factory=list)
    """Wrong next tokens, one per clean prompt (logit_diff)."""
    ablation: Literal["resample", "mean", "zero"] = "resample"
    """What a removed edge carries."""
    include_mlps: bool = True
    """Include MLPs as nodes."""
    n_prompts: int = 32
    """toy-induction: number of task sequences."""
    out: str = "runs/acdc"
    """Output folder."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("acdc", help="automated circuit discovery (ACDC) over heads and MLPs",
                       description="Find the edges between heads / MLPs that a behaviour needs (edge-level "
                                   "patching); writes OUT/edges.json and a drawing OUT/circuit.png.")
    add_dataclass_options(p, AcdcCliConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import mechscope as ms

    from ..circuits.acdc import AcdcConfig, acdc, draw

    cfg = dataclass_from_args(AcdcCliConfig, args)
    acfg = AcdcConfig(threshold=cfg.threshold, metric=cfg.metric, ablation=cfg.ablation,
                      include_mlps=cfg.include_mlps)
    if cfg.model == "toy-induction":
        from ..toy.induction import InductionConfig, acdc_task, load_induction_model

        model = load_induction_model(InductionConfig())
        clean, corrupt, loss = acdc_task(model, InductionConfig(), cfg.n_prompts)
        result = acdc(model, clean, corrupt, acfg, loss_fn=loss)
    else:
        if not cfg.clean:
            raise ValueError("give --clean prompts (or use --model toy-induction)")
        model = ms.load_model(cfg.model)
        clean = model.to_tokens(cfg.clean)
        corrupt = model.to_tokens(cfg.corrupt) if cfg.corrupt else None
        if corrupt is not None and corrupt.shape != clean.shape:
            raise ValueError(f"clean and corrupt prompts tokenize to shapes {tuple(clean.shape)} and "
                             f"{tuple(corrupt.shape)}; they must match")
        answers = torch.tensor([model.to_single_token(t) for t in cfg.answers]) if cfg.answers else None
        wrong = torch.tensor([model.to_single_token(t) for t in cfg.wrong]) if cfg.wrong else None
        positions = torch.tensor([clean.shape[1] - 1])
        result = acdc(model, clean, corrupt, acfg, positions=positions, answers=answers, wrong=wrong)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "edges.json", result.to_json(), indent=1)
    draw(result, str(out / "circuit.png"), model.cfg.n_layers, model.cfg.n_heads)
    print(f"{len(result.edges)}/{len(result.all_edges)} edges kept, circuit recovers {result.recovered:.1%} "
          f"of the metric; {(out / 'edges.json').resolve()}")
    return 0
