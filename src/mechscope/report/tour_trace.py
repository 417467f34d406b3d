"""Tour step for tracing: an attribution graph, scored and checked by intervention.

With the model's full transcoder set cached (``mechscope dictionaries build``) the graph runs through a transcoder
at every MLP; otherwise through the tour's single transcoder, and the graph's scores say how much of the model is
left in error nodes. The graph is written as ``<out>/graph/graph.json`` (the web UI's viewer opens it) and drawn
into the report; :func:`mechscope.circuits.faithfulness.faithfulness` then ablates and steers its top features in
three settings (the frozen graph, the replacement model, the real model) and ablates them together against random
features; a second graph that differentiates through norms and attention is checked in the real model beside it.
Every conclusion in the text comes from :mod:`.prose`.
"""

from __future__ import annotations

from . import prose
from .html import esc
from .tour import TourContext

GRAPH_PROMPT = "The capital of France is"
TOP_K = 10


def _transcoders(ctx: TourContext):
    """``(transcoders, layers covered, description)``: the cached full set, else the tour's own transcoder."""
    from ..dictionaries import load

    found = ctx.findings.get("transcoder_set")
    if found is not None:
        tcs = found.transcoders()
        return tcs, len(tcs), f"the cached transcoder set ({len(tcs)} layers, <code>{esc(found.folder)}</code>)"
    tc_dir = ctx.findings["transcoder_dir"]
    tc = load(tc_dir)
    layer = int(str(tc.cfg.hook_name).split(".")[1])
    return [tc], 1, f"the tour's transcoder at block {layer}"


def step_graph(ctx: TourContext) -> None:
    from ..circuits import AttributionConfig, attribute, feature_supernodes
    from ..circuits.faithfulness import FaithfulnessConfig, faithfulness
    from .graph_plot import graph_figure, scatter_figure

    model, quick = ctx.model, ctx.config.quick
    tcs, covered, where = _transcoders(ctx)
    tc_dir = ctx.findings.get("transcoder_dir")
    if tc_dir is not None and not (tc_dir / "features.db").is_file():  # cards for the graph's nodes in the web UI
        from ..features.pipeline import FeaturesConfig, build_features

        build_features(FeaturesConfig(dictionary=str(tc_dir), corpus=str(ctx.findings["source"]),
                                      max_tokens=4000 if quick else 10000, dashboards=10 if quick else 20),
                       model=model, progress=True)
    graph = attribute(model, tcs, GRAPH_PROMPT, cfg=AttributionConfig(max_feature_nodes=256 if quick else 1024))
    pr = graph.prune()
    out = ctx.out / "graph"
    graph.write_json(out / "graph.json", slug="tour", prompt=GRAPH_PROMPT, scan=ctx.config.model,
                     supernodes=feature_supernodes(graph, pr.node_mask))
    graph.save(out / "full")
    target = int(graph.logit_tokens[0])
    settings = ("graph", "real") if quick else ("graph", "replacement", "real")
    check = faithfulness(model, tcs, GRAPH_PROMPT, target, graph=graph,
                         cfg=FaithfulnessConfig(n_features=TOP_K, settings=settings))
    check.write_json(out / "faithfulness.json")
    live_graph = attribute(model, tcs, GRAPH_PROMPT, target_tokens=[target],
                           cfg=AttributionConfig(max_feature_nodes=256 if quick else 1024, live_norms=True,
                                                 live_attention=True))
    live_check = faithfulness(model, tcs, GRAPH_PROMPT, target, graph=live_graph,
                              cfg=FaithfulnessConfig(n_features=TOP_K, settings=("real",)))
    live_check.write_json(out / "faithfulness_live.json")
    rep, comp = float(graph.replacement_score), float(graph.completeness_score)

    s = ctx.report.section("8. Trace and verify: an attribution graph")
    target_str = graph.logit_token_strs[0]
    s.text(f"The attribution graph of <code>{esc(GRAPH_PROMPT)}</code> → <code>{esc(target_str)}</code> "
           f"(p = {float(graph.logit_probs[0]):.2f}) through {where}: the replacement model freezes attention "
           f"patterns and norms at their values on this prompt, so every edge is a linear effect. "
           f"{graph.n_features} active features were attributed; pruning keeps {int(pr.node_mask.sum())} nodes and "
           f"{int(pr.edge_mask.sum())} edges. The interactive viewer opens <code>graph/graph.json</code> "
           f"(<code>mechscope serve --runs {esc(ctx.out)}</code>).")
    s.text(prose.graph_scores(rep, comp, covered, model.cfg.n_layers))
    s.figure(graph_figure(graph), "The pruned graph: x is the token position, y the layer; edge width is |weight|")
    real = check.ablation["real"]
    pred = [r.predicted_ablation for r in check.rows]
    meas = [r.measured_ablation["real"] for r in check.rows]
    s.figure(scatter_figure(pred, meas, xlabel="predicted change (graph)", ylabel="measured change (real model)",
                            title=f"single-feature ablations, real model, r = {real.pearson:.2f}"),
             f"Ablating each of the top {len(check.rows)} features alone: change of the {target_str!r} logit "
             f"(minus the mean logit)")
    s.text("<b>Verified by intervention.</b> " + " ".join(
        prose.faithfulness(name, check.ablation[name].pearson, check.ablation[name].sign_agreement, len(check.rows))
        for name in settings))
    s.text(prose.live_graph(real.pearson, live_check.ablation["real"].pearson, len(live_check.rows)))
    s.text(prose.group_ablation(check.top_group.measured["real"], check.top_group.predicted,
                                check.random_group.measured["real"], len(check.top_group.node_ids)))
    s.table(["node (layer_feature_pos)", "predicted ablation", *[f"measured ({n})" for n in settings],
             "predicted steering ×2", "measured steering (real)"],
            [(r.node_id, f"{r.predicted_ablation:+.4f}", *[f"{r.measured_ablation[n]:+.4f}" for n in settings],
              f"{r.predicted_steer:+.4f}", f"{r.measured_steer['real']:+.4f}") for r in check.rows])
    ctx.findings.update(graph_nodes=int(pr.node_mask.sum()), graph_layers_covered=covered,
                        graph_replacement_score=rep, graph_completeness_score=comp,
                        graph_r_real=real.pearson, graph_sign_real=real.sign_agreement,
                        graph_r_graph=check.ablation["graph"].pearson,
                        graph_steering_r_real=check.steering["real"].pearson,
                        graph_top_change=check.top_group.measured["real"],
                        graph_top_predicted=check.top_group.predicted,
                        graph_random_change=check.random_group.measured["real"],
                        graph_live_r_real=live_check.ablation["real"].pearson)
