"""Tour steps for the classic causal toolkit: logit lens, direct logit attribution, IOI patching, head detectors."""

from __future__ import annotations

import torch

from . import prose
from .html import esc
from .tour import TourContext

FACT_PROMPT = "The capital of France is"


def step_lens(ctx: TourContext) -> None:
    from ..lens import direct_logit_attribution, logit_lens

    m = ctx.model
    lens = logit_lens(m, FACT_PROMPT)
    paris = " Paris"
    ranks = lens.rank(paris).tolist()
    first_top = next((i for i, r in enumerate(ranks) if r == 0), None)
    top1 = lens.top_k(1)
    s = ctx.report.section("3. Logit lens and direct logit attribution")
    s.text(f"The <b>logit lens</b> reads the residual stream entering each block through the final norm and the "
           f"unembedding. For <code>{esc(FACT_PROMPT)}</code> the model's answer <code>{esc(paris)}</code> becomes "
           + (f"the top prediction at <b>{esc(lens.layer_labels[first_top])}</b>" if first_top is not None
              else "never the top prediction")
           + f"; the last row equals the model's own logits. Mean KL to the final distribution falls from "
             f"{float(lens.mean_kl()[0]):.2f} to {float(lens.mean_kl()[-2]):.2f} nats before the last block.")
    from .plots import line_plot

    p_paris = lens.logits[:, 0, -1].float().softmax(-1)[:, m.to_single_token(paris)]  # (L+1,)
    s.figure(line_plot({f"p({paris!r})": p_paris.tolist()}, lens.layer_labels,
                       title="Logit lens at the last position", ylabel="probability"),
             f"Logit lens at the last token: probability of {paris!r} per layer")
    s.figure(lens.plot_kl(), "Logit lens: KL to the model's final distribution per layer (mean over positions)")
    rows = [(lab, tok[0][0], f"{tok[0][1]:.3f}", int(r)) for lab, tok, r in zip(lens.layer_labels, top1, ranks)]
    s.table(["layer", "top token", "p(top)", f"rank of {paris!r}"], rows[:: max(1, len(rows) // 12)] + [rows[-1]])
    dla = direct_logit_attribution(m, FACT_PROMPT, paris, split_heads=True)
    total = float(dla.total[0])
    recomposed = float(dla.values[:, 0].sum() + dla.bias[0])
    s.text(f"<b>Direct logit attribution</b> splits the {paris!r} logit ({total:.2f}) into the direct "
           f"contributions of every head, MLP and the embeddings, through the final norm with its cached scale; "
           f"they add back up to {recomposed:.2f}. The largest:")
    s.table(["component", "contribution"], [(lab, f"{v:+.3f}") for lab, v in dla.top(8)])
    s.figure(dla.heads().plot(), "Direct logit attribution per head (layers × heads)")
    ctx.findings["lens_first_top_layer"] = first_top


def step_ioi(ctx: TourContext) -> None:
    from ..data.prompts import ioi_prompts
    from ..interventions import attribution_check, patch_sweep

    m = ctx.model
    n = 2 if ctx.config.quick else 4
    ioi = ioi_prompts(m, n=n)
    metric = ioi.metric()
    with torch.no_grad():
        clean_ld = metric(m(ioi.clean)).mean().item()
        corrupt_ld = metric(m(ioi.corrupted)).mean().item()
    layers = list(range(0, m.cfg.n_layers, 3 if ctx.config.quick else 2))
    sweep = patch_sweep(m, ioi.clean, ioi.corrupted, metric, kind="resid_pre", axis="pos", layers=layers)
    s = ctx.report.section("4. Indirect object identification: activation and attribution patching")
    s.text(f"IOI prompts such as <code>{esc(ioi.clean[0])}</code> should be completed with the indirect object. "
           f"Mean logit difference (IO − S) on {n} clean prompts: <b>{clean_ld:.2f}</b>; on the corrupted prompts "
           f"(all three names replaced): {corrupt_ld:.2f}.")
    best = sweep.argmax()
    norm = sweep.normalized()  # (layers, positions)
    where = [sweep.col_labels[int(norm[r].argmax())] for r in (0, len(layers) // 2, len(layers) - 1)]
    s.text(f"Patching the clean residual stream into the corrupted run, one (layer, position) cell at a time, "
           f"restores the logit difference where the information lives: the strongest cell is {esc(best[0])} at "
           f"token {esc(best[1])}. The most restoring position is {esc(where[0])} at {esc(sweep.row_labels[0])}, "
           f"{esc(where[1])} at {esc(sweep.row_labels[len(layers) // 2])} and {esc(where[2])} at "
           f"{esc(sweep.row_labels[-1])}"
           + (": the names' information moves to the final position as depth grows." if
              where[-1] == sweep.col_labels[-1] != where[0] else "."))
    s.figure(sweep.plot(normalized=True), "Residual patching: fraction of the clean logit difference restored")
    heads = patch_sweep(m, ioi.clean, ioi.corrupted, metric, kind="attn.z", axis="head", pos=-1,
                        layers=list(range(m.cfg.n_layers // 2, m.cfg.n_layers)))
    top = sorted(((float(v), f"{r}{c}") for r, row in zip(heads.row_labels, heads.normalized())
                  for c, v in zip(heads.col_labels, row)), reverse=True)[:5]
    s.text("The heads responsible (patching each head's output <code>attn.z</code> at the final position, later "
           "half of the model): " + ", ".join(f"{esc(name)} ({v:.2f})" for v, name in top) + ".")
    s.figure(heads.plot(normalized=True), "Head patching at the final position (normalised)")
    check = attribution_check(m, ioi.clean, ioi.corrupted, metric, kind="resid_pre", layers=layers)
    check_attn = attribution_check(m, ioi.clean, ioi.corrupted, metric, kind="attn_out", layers=layers)
    s.text("<b>Attribution patching</b> estimates a whole sweep from two forward passes and one backward pass. "
           + prose.attribution_patching(check_attn.correlation, check.correlation))
    s.figure(check.attribution.plot(), "Attribution-patching estimate of the residual sweep (metric change)")
    ctx.findings.update(ioi_logit_diff=clean_ld, attribution_correlation=check.correlation,
                        attribution_correlation_attn_out=check_attn.correlation,
                        ioi_top_heads=[name for _, name in top])


def step_heads(ctx: TourContext) -> None:
    from ..heads import head_scores

    m = ctx.model
    scores = head_scores(m, n=2 if ctx.config.quick else 8, seq_len=20)
    induction = scores.top("induction", 5)
    prev = scores.top("previous_token", 3)
    s = ctx.report.section("5. Attention-head detectors")
    s.text("On sequences of random tokens repeated twice, an <b>induction head</b> attends from each token of the "
           "second copy to the token after its first occurrence. Strongest induction heads: "
           + ", ".join(f"{esc(h)} ({v:.2f})" for h, v in induction) + ". Strongest previous-token heads: "
           + ", ".join(f"{esc(h)} ({v:.2f})" for h, v in prev) + ".")
    s.figure(scores.table("induction").plot(), "Induction score per head (layers × heads)")
    classes = scores.classify()
    counts: dict[str, int] = {}
    for c in classes.values():
        counts[c] = counts.get(c, 0) + 1
    by_count = sorted(counts.items(), key=lambda kv: -kv[1])
    s.table(["class", "heads"], by_count)
    ctx.findings["best_induction"] = induction[0]
