"""Sentences of the report that state a conclusion, each computed from the numbers it describes.

Every function here takes measured values and branches on them: the same call with other numbers says something
else (tests/report/test_prose.py changes the inputs and checks that the text changes). Thresholds are named
constants so a reader can see what "strong" or "agrees" means.
"""

from __future__ import annotations

import math

STRONG_R = 0.8
"""A correlation at least this high is called strong."""
WEAK_R = 0.4
"""Below this a correlation is called weak."""
GOOD_CE = 0.9
"""CE loss recovered at least this high: the dictionary keeps most of what the model needs."""
POOR_CE = 0.7
"""Below this the spliced model loses much of the next-token loss."""
MANY_DEAD = 0.1
"""A dead fraction above this is called high."""


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def correlation_word(r: float) -> str:
    """``strong`` / ``moderate`` / ``weak`` / ``negative`` / ``undefined`` for a Pearson r."""
    if not _finite(r):
        return "undefined"
    if r < 0:
        return "negative"
    return "strong" if r >= STRONG_R else ("moderate" if r >= WEAK_R else "weak")


def attribution_patching(corr_attn: float, corr_resid: float) -> str:
    """How far attribution patching can be trusted, from its correlation with real patching on two sweeps."""
    head = (f"Against the real patching sweeps its correlation is <b>{corr_attn:.2f}</b> for the attention outputs "
            f"({correlation_word(corr_attn)}) and {corr_resid:.2f} for the residual stream "
            f"({correlation_word(corr_resid)}).")
    if not _finite(corr_attn, corr_resid):
        return head + " A sweep had no variance, so one correlation is undefined."
    if corr_resid < WEAK_R <= corr_attn:
        return head + (" Patching the residual at a name's position swaps the name itself, a change too large for "
                       "a first-order (gradient) estimate: trust the attention map for sizes, the residual map at "
                       "most for where the information sits.")
    if corr_attn < WEAK_R and corr_resid < WEAK_R:
        return head + " Both are weak here: the linear estimate should not replace real patching on this task."
    if min(corr_attn, corr_resid) >= STRONG_R:
        return head + " Both are strong: the two-pass estimate ranks components as real patching does."
    return head + " The estimate is a usable first pass; confirm the top cells with real patching."


def dictionary_quality(name: str, fvu: float, ce_recovered: float, dead_fraction: float) -> str:
    """One sentence judging a dictionary from its held-out FVU, CE loss recovered and dead fraction."""
    if not _finite(fvu, ce_recovered, dead_fraction):
        return f"The {name}'s evaluation is incomplete (a metric is not a number)."
    if ce_recovered >= GOOD_CE:
        verdict = "keeps most of what the model needs from this point"
    elif ce_recovered >= POOR_CE:
        verdict = "keeps much, but not all, of what the model needs from this point"
    else:
        verdict = "loses much of what the model needs from this point: read its features with caution"
    dead = (f"; {dead_fraction:.0%} of its latents never fired on the evaluation text, a high share"
            if dead_fraction > MANY_DEAD else f"; {dead_fraction:.1%} of its latents never fired")
    return (f"Spliced in, the {name} recovers {ce_recovered:.2f} of the next-token loss and leaves {fvu:.2f} of "
            f"the variance unexplained: it {verdict}{dead}.")


def steering(concept: str, feature: int, success: float, control: float, baseline: float, prob: float,
             control_prob: float, baseline_prob: float, n_prompts: int, *, mentions: float = math.nan,
             control_mentions: float = math.nan, baseline_mentions: float = math.nan,
             strength: float = math.nan) -> str:
    """What steering toward ``concept`` with ``feature`` achieved, against equal-norm random features and none.

    ``success`` / ``control`` / ``baseline`` are shares of continuations that mention the concept and are still
    fluent; ``*mentions`` count mentions of any kind (degenerate repetition included) when they were measured.
    """
    if not _finite(success, control, baseline):
        return f"Steering toward '{concept}' could not be measured."
    at = f" at ×{strength:g}" if _finite(strength) else ""
    said = f" ({mentions:.0%} mention it at all)" if _finite(mentions) and mentions != success else ""
    rates = (f"With feature {feature}{at}, {success:.0%} of {n_prompts} continuations mention '{concept}' and stay "
             f"fluent{said}, against {control:.0%} with random features of the same norm and {baseline:.0%} without "
             f"steering; the next-token probability of its words goes from {baseline_prob:.1e} to {prob:.1e} "
             f"({control_prob:.1e} for the random features).")
    if success > max(control, baseline) and success >= 0.5:
        return rates + " The feature steers toward the concept, and random directions of its size do not."
    if success > max(control, baseline):
        return rates + " The feature moves continuations toward the concept more than the controls, but in a " \
                       "minority of prompts."
    if _finite(mentions, control_mentions, baseline_mentions) and mentions > max(control_mentions,
                                                                                  baseline_mentions) + 0.2:
        return rates + " The feature makes continuations name the concept only by breaking them: no strength " \
                       "tried gives more fluent mentions than the controls."
    if prob > 2 * max(control_prob, baseline_prob) and _finite(prob, control_prob, baseline_prob):
        return rates + " The concept's words become more likely, but greedy continuations rarely say them."
    return rates + " At this strength the feature does not steer toward the concept better than the controls."


def steering_sweep(feature: int, sweep: list[dict[str, float]]) -> str:
    """Where, over a strength sweep, mentions of the concept peak and fluency gives way."""
    if not sweep:
        return f"Feature {feature} was not swept."
    top = max(sweep, key=lambda x: (x["mentions"], -x["strength"]))
    broken = next((x for x in sweep if x["fluent"] < 0.5), None)
    said = (f"mentions of the concept (of any kind) peak at ×{top['strength']:g} ({top['mentions']:.0%})"
            if top["mentions"] > 0 else "no strength makes a continuation mention the concept")
    fluency = (f"from ×{broken['strength']:g} on, fewer than half of the continuations are fluent" if broken else
               "every strength tried keeps at least half of the continuations fluent")
    return f"Feature {feature} swept over strengths: {said}; {fluency}."


def graph_scores(replacement: float, completeness: float, covered: int, n_layers: int) -> str:
    """What the graph's scores say about how much of the computation its features explain."""
    cover = (f"a transcoder at every one of the {n_layers} MLPs" if covered == n_layers else
             f"transcoders at {covered} of {n_layers} MLPs (the others are error nodes)")
    if not _finite(replacement, completeness):
        return f"The graph runs through {cover}; its scores are undefined."
    text = (f"The graph runs through {cover}. Its replacement score is <b>{replacement:.2f}</b> (the share of "
            f"end-to-end influence on the output that flows from tokens through features rather than error nodes) "
            f"and its completeness score <b>{completeness:.2f}</b> (the share of each node's input that comes from "
            f"features and tokens, weighted by influence)")
    if replacement >= 0.5 and completeness >= 0.7:
        return text + ": the features carry most of the computation shown."
    if replacement < 0.2:
        return text + f": most of the influence passes through error nodes ({1 - replacement:.0%}), so the features " \
                      "shown explain only a small part of the answer."
    return text + f": error nodes still carry {1 - replacement:.0%} of the influence; read the graph as partial."


def faithfulness(setting: str, r: float, sign_agreement: float, n: int) -> str:
    """How the graph's predicted intervention effects compare with measured ones in one setting."""
    if not _finite(r, sign_agreement) or n < 2:
        return f"In the {setting} setting the comparison is undefined (too few features or no variance)."
    word = correlation_word(r)
    return (f"In the {setting} setting, predicted and measured changes of the target logit over {n} single-feature "
            f"interventions correlate at r = {r:.2f} ({word}), with the same sign {sign_agreement:.0%} of the time"
            + (": the graph predicts what these interventions do." if r >= STRONG_R and sign_agreement >= 0.8 else
               ": the graph's per-feature predictions are only partly borne out." if r >= WEAK_R else
               ": per-feature predictions are not borne out here."))


def live_graph(r_frozen: float, r_live: float, n: int) -> str:
    """The same check on a graph that differentiates through norms and attention instead of freezing them."""
    if not _finite(r_frozen, r_live) or n < 2:
        return ("A second graph, differentiated through the norm scales and attention patterns, could not be "
                "compared (too few features or no variance).")
    text = (f"The same check on a second graph that differentiates through the norm scales and attention patterns "
            f"instead of freezing them (<code>--live-norms --live-attention</code>; first-order edges, not "
            f"circuit-tracer's definition): real-model r = {r_live:.2f} over its top {n} features, against "
            f"{r_frozen:.2f} for the frozen graph")
    if r_live > r_frozen + 0.05:
        return text + ", so here much of the gap between the graph and the real model is what freezing leaves out."
    if r_live < r_frozen - 0.05:
        return text + ", so here linearising through them does not help: the gap lies elsewhere."
    return text + ", about the same: here freezing is not what separates the graph from the real model."


def group_ablation(measured: float, predicted: float, random_mean: float, n: int) -> str:
    """Ablating the top-n graph features together, against the graph's prediction and random features."""
    if not _finite(measured, predicted):
        return "The joint ablation could not be measured."
    same_sign = (measured > 0) == (predicted > 0)
    close = abs(measured - predicted) <= 0.25 * max(abs(predicted), 1e-9)
    bigger = _finite(random_mean) and abs(measured) > 2 * abs(random_mean)
    text = (f"Ablating the top {n} graph features together moves the target by <b>{measured:+.3f}</b> (the graph "
            f"predicts {predicted:+.3f}); as many random active features move it by {random_mean:+.3f} on average.")
    if close and bigger:
        return text + (" The prediction holds within a quarter, and the graph's features matter far more than "
                       "random ones.")
    if same_sign and bigger:
        return text + " The direction is right and the graph's features matter more than random ones, but the size " \
                      "differs from the prediction."
    if not same_sign:
        return text + " The measured change has the opposite sign: the graph does not describe this intervention."
    return text + " The graph's features matter no more than random ones here."
