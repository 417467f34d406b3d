"""Tour steps for sparse dictionaries: train an SAE (and, without a cached transcoder set, a transcoder) on the
prose+code mixture, look at the SAE's features with explanations, and steer toward concepts found in its database.

Training goes through the library (:func:`mechscope.training.train`), both dictionaries from one harvest, at the
middle layer of the model (so the layers follow the model's depth). The run folder records the settings it was
trained with (``tour_settings.json``); a later tour reuses it only when they match (``--quick``, another model or
a new tour version train again). Steering searches the feature database for a feature per concept word and
measures success over many neutral prompts against random features of equal norm and against no steering.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from . import prose
from .html import esc
from .tour import TourContext

MIXTURE = "mixture"
"""Training text: 70% prose (Python docs, quotations), 30% code by characters (mechscope data info)."""


def tour_source() -> str:
    """``mixture`` when the prose corpus is fetched (``mechscope data fetch prose``), else ``code``."""
    from ..data.corpora import prose_manifest

    try:
        prose_manifest()
    except Exception:  # noqa: BLE001 - absent or damaged corpus: the tour says so and trains on code
        return "code"
    return MIXTURE
K, EXPANSION = 32, 8
SETTINGS_VERSION = 2
CONCEPTS = ("music", "money", "water", "war", "love", "food", "death", "king", "computer", "city", "god", "time",
            "light", "night", "woman", "child")
"""Concept words searched for in the feature database (the first features that peak on them are steered)."""
QUICK_STRENGTHS = (2.0, 8.0, 16.0)
"""Steering strengths swept in the quick setting (the default setting sweeps features.concepts.STRENGTHS); the
weakest with the most fluent mentions is kept, and the whole sweep is shown."""


def tour_layer(model: Any) -> int:
    """The layer the tour decomposes: the middle of the model."""
    return int(model.cfg.n_layers) // 2


def _settings(ctx: TourContext, with_transcoder: bool) -> dict[str, Any]:
    quick = ctx.config.quick
    return {"version": SETTINGS_VERSION, "model": ctx.config.model, "source": tour_source(),
            "layer": tour_layer(ctx.model),
            "steps": 60 if quick else 300, "batch_size": 1024, "k": K, "expansion": EXPANSION,
            "transcoder": with_transcoder, "eval_contexts": 4 if quick else 16}


def train_dictionaries(ctx: TourContext, with_transcoder: bool) -> Path:
    """Train (or reuse) the tour's SAE and transcoder; returns the run folder (``sae/``, ``transcoder/``)."""
    from ..activations import ActivationStore, StoreConfig
    from ..data import PackConfig, open_source, pack
    from ..evals import evaluate, plot_eval
    from ..training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train

    run = ctx.out / "dictionaries"
    want = _settings(ctx, with_transcoder)
    stamp = run / "tour_settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == want and (run / "eval.json").is_file():
        return run
    model, layer, source = ctx.model, want["layer"], want["source"]
    specs = [DictionarySpec("topk", hook=f"blocks.{layer}.resid_post", k=K, expansion=EXPANSION, name="sae")]
    if with_transcoder:
        specs.append(DictionarySpec("skip_transcoder", hook=f"blocks.{layer}.mlp_in",
                                    hook_out=f"blocks.{layer}.mlp_out", activation="topk", k=K,
                                    expansion=EXPANSION, lr=2.4e-3, name="transcoder"))
    hooks = sorted({h for s in specs for h in s.hooks_in + s.hooks_out})
    pack_cfg = PackConfig(context_size=128)
    store = ActivationStore.from_model(model, lambda: pack(open_source(source), model.tokenizer, pack_cfg), hooks,
                                       StoreConfig(batch_size=want["batch_size"], buffer_rows=16 * 1024,
                                                   model_batch=16))
    steps = want["steps"]
    # Short runs: a higher peak rate than the library default and a warmup of a tenth of the run.
    cfg = TrainConfig(optim=OptimConfig(lr=1e-3, warmup_steps=steps // 10), loop=LoopConfig(steps=steps, log_every=5))
    meta = {"data": {"source": source, "pack": vars(pack_cfg), "buffer_rows": 16 * 1024}}
    result = train(store, specs, cfg, out=run, model_name=ctx.config.model, overwrite=True, meta=meta)
    contexts = list(itertools.islice(pack(open_source(f"{source}@heldout"), model.tokenizer, pack_cfg),
                                     want["eval_contexts"]))
    report = evaluate(model, result.dictionaries, contexts, source=f"{source}@heldout")
    report.write(run / "eval.json")
    plot_eval(report, run / "eval.png")
    stamp.write_text(json.dumps(want))
    return run


def _loss_figure(run: Path, title: str):
    from .plots import line_plot

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    series: dict[str, list[float]] = {}
    steps: list[str] = []
    for r in rows:
        series.setdefault(r["dictionary"], []).append(r["fvu"])
        if r["dictionary"] == rows[0]["dictionary"]:
            steps.append(str(r["step"]))
    return line_plot({f"{k} FVU": v for k, v in series.items()}, steps, title=title,
                     ylabel="fraction of variance unexplained")


def step_train(ctx: TourContext) -> None:
    from ..sets import TranscoderSetError, find_transcoder_set

    try:
        found = find_transcoder_set(ctx.model)
    except TranscoderSetError as e:
        found = None
        ctx.findings["transcoder_set_error"] = str(e)
    ctx.findings["transcoder_set"] = found
    run = train_dictionaries(ctx, with_transcoder=found is None)
    layer = tour_layer(ctx.model)
    report = json.loads((run / "eval.json").read_text())
    s = ctx.report.section("6. Decompose: a TopK SAE and a transcoder")
    rows, verdicts = [], []
    for name, d in report["dictionaries"].items():
        down = d.get("downstream") or {}
        ce = down.get("ce_recovered", float("nan"))
        rows.append((name, d["arch"], d["d_sae"], f"{d['l0']:.1f}", f"{d['fvu']:.3f}", f"{d['cosine']:.3f}",
                     f"{d['dead_fraction']:.3f}", f"{ce:.3f}"))
        verdicts.append(prose.dictionary_quality(name, d["fvu"], ce, d["dead_fraction"]))
        ctx.findings[f"{name}_fvu"] = d["fvu"]
        ctx.findings[f"{name}_ce_recovered"] = ce
    settings = json.loads((run / "tour_settings.json").read_text())
    tokens, source = settings["steps"] * settings["batch_size"], settings["source"]
    text = ("the offline prose+code mixture (<code>mixture</code>: Python documentation and quotations from "
            "Debian's packages, plus the standard library's source)" if source == MIXTURE else
            "the standard library's source only (<code>code</code>): the prose corpus is not fetched here "
            "(<code>mechscope data fetch prose</code>), so expect code features")
    s.text(f"A TopK SAE (k {K}, {EXPANSION}× expansion) reads <code>blocks.{layer}.resid_post</code>, the middle of "
           f"the model's {ctx.model.cfg.n_layers} blocks"
           + (f", and a skip transcoder reads block {layer}'s MLP input and predicts its output" if found is None
              else "")
           + (". They train together" if found is None else ". It trains") +
           f" on one harvest of {tokens:,} tokens of {text} "
           f"through <code>mechscope.training.train</code>; evaluation uses the held-out "
           f"split (CE recovered: the next-token loss with the dictionary spliced in, between zero-ablation (0) "
           f"and the clean model (1)).")
    s.table(["dictionary", "arch", "latents", "L0", "FVU", "cosine", "dead fraction", "CE recovered"], rows)
    s.text(" ".join(verdicts))
    if found is not None:
        s.text(f"The model's full transcoder set is cached at <code>{esc(found.folder)}</code> "
               f"({found.n_layers} layers, <code>mechscope dictionaries build</code>); the attribution graph below "
               f"uses it, so the tour trains no transcoder of its own.")
    elif "transcoder_set_error" in ctx.findings:
        s.text(f"A cached transcoder set was found but cannot be used: {esc(ctx.findings['transcoder_set_error'])}. "
               f"The tour trained its own transcoder instead.")
    s.figure(_loss_figure(run, "training"), "Fraction of variance unexplained during training (training batches)")
    ctx.findings["sae_dir"] = run / "sae"
    ctx.findings["source"] = source
    ctx.findings["transcoder_dir"] = run / "transcoder" if found is None else None


def _marked_context(model, card, width: int = 12) -> str:
    """The strongest example's tokens around its maximum, the maximum token in brackets."""
    if not card.top_examples:
        return ""
    ex = card.top_examples[0]
    lo, hi = max(0, ex.position - width), min(len(ex.tokens), ex.position + 4)
    strs = [model.to_string([t]) for t in ex.tokens[lo:hi]]
    strs[ex.position - lo] = f"[{strs[ex.position - lo]}]"
    return "".join(strs).replace("\n", "⏎")


def _explain(ctx: TourContext, db, features: list[int]) -> dict[int, str]:
    """Explanations by the local model for ``features`` (stored in the database); a failure is recorded, not hidden."""
    from ..features.autointerp import AutointerpConfig, explain
    from ..features.llm import LocalClient

    client = LocalClient(ctx.model)
    out = {}
    for f in features:
        card = db.card(f)
        if card.explanation:
            out[f] = card.explanation
            continue
        try:
            text = explain(client, card.top_examples, AutointerpConfig(n_explain=5))
        except Exception as e:  # noqa: BLE001 - an explainer failure must not stop the tour; it is shown
            out[f] = f"(no explanation: {e})"
            continue
        if text:
            db.set_explanation(f, text)
            out[f] = text
        else:
            out[f] = "(the local model gave no usable explanation)"
    return out


def step_features(ctx: TourContext) -> None:
    from ..dictionaries import load
    from ..features import FeatureDB
    from ..features.concepts import (
        NEUTRAL_PROMPTS,
        SELECTION_PROMPTS,
        STRENGTHS,
        choose_concept_feature,
        evaluate_concept_steering,
        fluency_bound,
    )
    from ..features.pipeline import FeaturesConfig, build_features

    sae_dir: Path = ctx.findings["sae_dir"]
    quick = ctx.config.quick
    db_path = sae_dir / "features.db"
    if not db_path.is_file():
        build_features(FeaturesConfig(dictionary=str(sae_dir), corpus=str(ctx.findings["source"]),
                                      max_tokens=6000 if quick else 30000, dashboards=20 if quick else 40),
                       model=ctx.model, progress=True)
    s = ctx.report.section("7. Interpret: features, explanations and steering")
    sae = load(sae_dir)
    with FeatureDB(db_path) as db:
        pool = db.by_density(0.0005, 0.02, limit=2000, descending=False)
        step = max(1, len(pool) // 8)
        shown = [f for f, _ in pool[::step][:3 if quick else 8]]
        explanations = _explain(ctx, db, shown)
        cards = [db.card(f) for f in shown]
        found = []
        for min_matches in (3, 2):  # a short statistics pass sees few examples per word: then accept two
            for concept in CONCEPTS:
                hit = choose_concept_feature(ctx.model, sae, db, concept, min_matches=min_matches,
                                             n_candidates=3 if quick else 5)
                if hit is not None:
                    found.append((concept, *hit))
            if found:
                break
        found.sort(key=lambda t: -t[3])  # output score, measured on prompts the steering below never sees
        prompts = NEUTRAL_PROMPTS[:10] if quick else NEUTRAL_PROMPTS
        results = []
        bound = fluency_bound(ctx.model, prompts, max_new_tokens=12) if found else None
        for concept, feature, match, _ in found[:1 if quick else 2]:
            results.append(evaluate_concept_steering(ctx.model, sae, db, concept, feature,
                                                     strengths=QUICK_STRENGTHS if quick else STRENGTHS,
                                                     prompts=prompts, n_controls=2 if quick else 3,
                                                     max_new_tokens=12, match_fraction=match, bound=bound))
    index = (sae_dir / "dashboards" / "index.html").relative_to(ctx.out)
    s.text(f"One streaming pass over the mixture gives each SAE feature its frequency, top-activating contexts and "
           f"logit effects, stored in <code>features.db</code> (SQLite, full-text search) and drawn as dashboards: "
           f"<a href='{esc(index)}'>open the dashboard index</a>. The local model reads each feature's top examples "
           f"and writes an explanation (stored in the database). Features of moderate sparsity, with their strongest "
           f"context (the maximally activating token in <b>[brackets]</b>):")
    s.table(["feature", "frequency", "explanation (local model)", "top context"],
            [(c.feature, f"{c.frequency:.4f}", explanations.get(c.feature, ""), _marked_context(ctx.model, c))
             for c in cards])
    if not results:
        s.text(f"No feature in the database peaks on or promotes any of the concept words searched "
               f"({', '.join(CONCEPTS)}), so there is no concept to steer toward in this run.")
        ctx.findings.update(steering_success=None, steering_control_success=None)
        return
    best = max(results, key=lambda r: (r.success - max(r.control_success, r.baseline_success), r.concept_prob))
    s.text(f"<b>Steering by a concept.</b> The database is searched for each of {len(CONCEPTS)} concept words; "
           f"{len(found)} have features whose top examples peak on the word or whose logit effects promote it. Of "
           f"each word's (up to) {3 if quick else 5} best-matching features of either kind, the one whose steering "
           f"raises the word's next-token "
           f"probability most on {len(SELECTION_PROMPTS)} separate selection prompts is kept (features that fire on a "
           f"word are not always the ones that make the model say it), and the concepts whose features raise it most "
           f"are steered "
           f"over {len(prompts)} neutral prompts (adding the feature's decoder direction times a multiple of its "
           f"max activation at every position), at strengths "
           f"{', '.join(f'×{x:g}' for x in (QUICK_STRENGTHS if quick else STRENGTHS))}. A continuation counts as a "
           f"success when it mentions the concept <i>and</i> is still fluent: the unsteered model finds it no less "
           f"likely than 90% of its own sampled continuations of the same prompts (at most "
           f"{best.max_nll:.2f} nats per token) and at most half of its tokens repeat. Each concept keeps the "
           f"weakest strength with the most successes, compared with {len(best.control_features)} random live "
           f"features scaled to the same norm and with no steering.")
    s.table(["concept", "feature", "top examples on it", "strength", "fluent mentions", "mentions (any)",
             "random features", "none", "p(concept) steered", "p random", "p none"],
            [(r.concept, r.feature, f"{r.match_fraction:.0%}", f"×{r.strength:g}", f"{r.success:.0%}",
              f"{r.mentions:.0%}", f"{r.control_success:.0%}", f"{r.baseline_success:.0%}", f"{r.concept_prob:.1e}",
              f"{r.control_prob:.1e}", f"{r.baseline_prob:.1e}") for r in results])
    s.view(best.sweep_view(title=f"steering toward '{best.concept}'"), prose.steering_sweep(best.feature, best.sweep))
    s.text(prose.steering(best.concept, best.feature, best.success, best.control_success, best.baseline_success,
                          best.concept_prob, best.control_prob, best.baseline_prob, len(best.prompts),
                          mentions=best.mentions, control_mentions=best.control_mentions,
                          baseline_mentions=best.baseline_mentions, strength=best.strength))
    s.table(["prompt", "without steering", f"steered toward '{best.concept}' (×{best.strength:g})", "verdict"],
            [(e["prompt"], e["baseline"], e["steered"], e["verdict"]) for e in best.examples[:8]])
    ctx.findings.update(steering_concept=best.concept, steering_feature=best.feature,
                        steering_strength=best.strength, steering_success=best.success,
                        steering_control_success=best.control_success,
                        steering_baseline_success=best.baseline_success, steering_prob=best.concept_prob,
                        steering_control_prob=best.control_prob, steering_baseline_prob=best.baseline_prob,
                        steering_mentions=best.mentions, steering_control_mentions=best.control_mentions,
                        steering_baseline_mentions=best.baseline_mentions, steering_fluent=best.fluent,
                        steering_sweep=best.sweep)
