"""Tour steps for sparse dictionaries: train an SAE and a transcoder, then look at the SAE's features and steer.

The steps call the same pipelines as ``mechscope train`` and ``mechscope features``, writing their run folders
under the tour's output folder; a second run of the tour reuses them instead of training again.
"""

from __future__ import annotations

import json
from pathlib import Path

from .html import esc
from .tour import TourContext

SAE_HOOK = "blocks.6.resid_post"
TRANSCODER_LAYER = 6
STEER_PROMPT = "My favourite thing to write about is"
STRENGTH = 8.0
CANDIDATES = 12


def _cli(argv: list[str]) -> None:
    from ..cli.main import main

    code = main(argv)
    if code:
        raise RuntimeError(f"`mechscope {' '.join(argv)}` failed with exit code {code}")


def _train(ctx: TourContext, name: str, extra: list[str]) -> Path:
    run = ctx.out / name
    if not (run / "eval.json").is_file():  # reuse a finished run
        steps = 60 if ctx.config.quick else 400
        # Short runs: a higher peak rate than the library default and a warmup of a tenth of the run.
        _cli(["train", "--model", ctx.config.model, "--out", str(run), "--steps", str(steps), "--batch-size", "1024",
              "--context-size", "128", "--expansion", "8", "--k", "32", "--lr", "1e-3",
              "--warmup-steps", str(steps // 10), "--eval-contexts", "4" if ctx.config.quick else "16", *extra])
    return run


def _loss_figure(run: Path, title: str):
    from .plots import line_plot

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    fvu = [r.get("fvu") for r in rows if r.get("fvu") is not None]
    return line_plot({"FVU": fvu}, [str(r.get("step", i)) for i, r in enumerate(rows)][:len(fvu)], title=title,
                     ylabel="fraction of variance unexplained")


def step_train(ctx: TourContext) -> None:
    sae = _train(ctx, "sae", ["--hook", SAE_HOOK, "--arch", "topk"])
    tc = _train(ctx, "transcoder", ["--hook", f"blocks.{TRANSCODER_LAYER}.mlp_in", "--hook-out",
                                    f"blocks.{TRANSCODER_LAYER}.mlp_out", "--arch", "transcoder",
                                    "--activation", "topk"])
    s = ctx.report.section("6. Decompose: a TopK SAE and a transcoder")
    rows = []
    for run in (sae, tc):
        report = json.loads((run / "eval.json").read_text())
        for name, d in report["dictionaries"].items():
            down = d.get("downstream") or {}
            rows.append((name, d["arch"], d["d_sae"], f"{d['l0']:.1f}", f"{d['fvu']:.3f}", f"{d['cosine']:.3f}",
                         f"{d['dead_fraction']:.3f}", f"{down.get('ce_recovered', float('nan')):.3f}"))
            ctx.findings[f"{run.name}_fvu"] = d["fvu"]
    s.text(f"A TopK SAE reads <code>{SAE_HOOK}</code>; a transcoder reads the MLP input of block "
           f"{TRANSCODER_LAYER} and predicts its output. Both train on the built-in offline corpus (the Python "
           f"standard library's own source) with <code>mechscope train</code>, and <code>eval.json</code> records "
           f"their quality on held-out text (CE recovered: the next-token loss with the dictionary spliced in, "
           f"between zero-ablation (0) and the clean model (1)).")
    s.table(["dictionary", "arch", "latents", "L0", "FVU", "cosine", "dead fraction", "CE recovered"], rows)
    s.figure(_loss_figure(sae, "SAE training"), "Fraction of variance unexplained during SAE training")
    ctx.findings["sae_run"] = sae
    ctx.findings["transcoder_run"] = tc


def step_features(ctx: TourContext) -> None:
    from ..dictionaries import load
    from ..features import FeatureDB, feature_vector, steer
    from ..features.pipeline import FeaturesConfig, build_features

    sae_run: Path = ctx.findings["sae_run"]  # type: ignore[assignment]
    db_path = sae_run / "features.db"
    if not db_path.is_file():
        build_features(FeaturesConfig(run=str(sae_run), max_tokens=4000 if ctx.config.quick else 20000,
                                      dashboards=20 if ctx.config.quick else 30), model=ctx.model, progress=True)
    s = ctx.report.section("7. Interpret: features, dashboards and steering")
    with FeatureDB(db_path) as db:
        # features of moderate sparsity, spread evenly over that range (the densest rarely read as one concept)
        pool = db.by_density(0.001, 0.03, limit=1000, descending=False)
        step = max(1, len(pool) // CANDIDATES)
        cards = [db.card(f) for f, _ in pool[::step][:CANDIDATES]]
    rows = [(c.feature, f"{c.frequency:.4f}", f"{c.max_act:.2f}", _marked_context(ctx.model, c),
             ", ".join(repr(t.token) for t in c.promoted[:3])) for c in cards[:8]]
    index = (sae_run / "dashboards" / "index.html").relative_to(ctx.out)
    s.text(f"One streaming pass over the corpus gives each feature's frequency, top-activating contexts and logit "
           f"effects; they are stored in <code>features.db</code> (SQLite, full-text search) and drawn as "
           f"dashboards: <a href='{esc(index)}'>open the dashboard index</a>. Some of the sparser features, each with "
           f"its strongest context (the maximally activating token in <b>[brackets]</b>) and the tokens its decoder "
           f"direction promotes through the unembedding:")
    s.table(["feature", "frequency", "max act", "top context", "promotes"], rows)
    # Steering: add the decoder direction of a feature scaled by its max activation and watch the token it
    # promotes most. Candidates are tried and the strongest shown; the table below says how every one did.
    sae = load(next(p.parent for p in sae_run.rglob("sae_weights.safetensors")))
    tried = []
    for c in cards:
        if not c.promoted:
            continue
        vec = feature_vector(sae, c.feature, strength=STRENGTH, max_activation=c.max_act)
        r = steer(ctx.model, STEER_PROMPT, [vec], targets=[c.promoted[0].token_id])
        tried.append((r.prob_ratio[0], c, r))
    tried.sort(key=lambda t: -t[2].prob_ratio[0])
    _, card, _ = tried[0]
    target = card.promoted[0].token
    vec = feature_vector(sae, card.feature, strength=STRENGTH, max_activation=card.max_act)
    result = steer(ctx.model, STEER_PROMPT, [vec], targets=[card.promoted[0].token_id], watch=(sae, card.feature),
                   max_new_tokens=12)
    zero = steer(ctx.model, STEER_PROMPT, [feature_vector(sae, card.feature, 0.0, max_activation=card.max_act)],
                 targets=[card.promoted[0].token_id])
    raised = sum(r.steered_probs[0] > r.baseline_probs[0] for _, _, r in tried)
    s.text(f"<b>Steering</b> with feature {card.feature} (strength {STRENGTH:g} × its max activation "
           f"{card.max_act:.2f}), whose decoder direction most promotes {esc(repr(target))}: the probability of that "
           f"token after <code>{esc(STEER_PROMPT)}</code> goes from {result.baseline_probs[0]:.2e} to "
           f"<b>{result.steered_probs[0]:.2e}</b>; the feature's own activation from "
           f"{result.baseline_feature_act:.2f} to {result.steered_feature_act:.2f}. Strength 0 leaves it at "
           f"{zero.steered_probs[0]:.2e}. Of the {len(tried)} candidate features tried, steering raised the "
           f"promoted token's probability for {raised}; this one raised it most (by ratio).")
    s.table(["", "continuation"], [("without steering", result.baseline_text), ("with steering", result.steered_text)])
    s.table(["feature", "promoted token", "p before", "p steered"],
            [(c.feature, repr(c.promoted[0].token), f"{r.baseline_probs[0]:.2e}", f"{r.steered_probs[0]:.2e}")
             for _, c, r in tried])
    ctx.findings["steering_ratio"] = result.prob_ratio[0]
    ctx.findings["steering_raised_fraction"] = raised / len(tried)


def _marked_context(model, card, width: int = 12) -> str:
    """The strongest example's tokens around its maximum, the maximum token in brackets."""
    if not card.top_examples:
        return ""
    ex = card.top_examples[0]
    lo, hi = max(0, ex.position - width), min(len(ex.tokens), ex.position + 4)
    strs = [model.to_string([t]) for t in ex.tokens[lo:hi]]
    strs[ex.position - lo] = f"[{strs[ex.position - lo]}]"
    return "".join(strs).replace("\n", "⏎")
