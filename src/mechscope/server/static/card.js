/* The feature card: headline statistics, activation histogram, logit effects, neighbours and examples.
   Shared by the web UI (features page, graph node panel) and mechscope.display (notebook and report views). */
"use strict";

function renderTokens(ex) {
  const strs = ex.str_tokens || ex.tokens.map(String);
  const mx = Math.max(1e-9, ...ex.acts);
  return el("div", {class: "example"}, `${fmt(ex.activation, 2)}  `, strs.map((s, i) => el("span", {
    class: "tok" + (i === ex.position ? " max" : ""), style: {background: ex.acts[i] > 0 ? actColor(ex.acts[i] / mx) : ""},
    title: `${JSON.stringify(s)}: ${fmt(ex.acts[i], 3)}`}, s)));
}

function histogram(counts, edges) {
  const W = 300, H = 70, n = counts.length, mx = Math.max(1, ...counts);
  const svg = el("svg", {class: "hist", viewBox: `0 0 ${W} ${H + 14}`, width: W, height: H + 14});
  counts.forEach((c, i) => svg.append(el("rect", {x: i * W / n, y: H - H * c / mx, width: W / n - 1,
                                                  height: H * c / mx}, el("title", {}, `${c}`))));
  if (edges && edges.length) {
    svg.append(el("text", {x: 0, y: H + 12, "font-size": 10, fill: "#6b7280"}, fmt(edges[0])));
    svg.append(el("text", {x: W, y: H + 12, "font-size": 10, fill: "#6b7280", "text-anchor": "end"},
                  fmt(edges[edges.length - 1])));
  }
  return svg;
}

/** A feature card from {feature, label, card, db, dashboard}. With `run` (the web UI) the card links to the
    steering page, neighbouring features and the dashboard; without it (notebooks, reports) it links nowhere. */
function renderCard(resp, run) {
  const c = resp.card;
  const linked = run !== undefined && run !== null;
  const pills = (list, cls) => list.length ? list.map((t) => el("span", {class: `pill ${cls}`,
    title: fmt(t.value, 4)}, JSON.stringify(t.token))) : el("span", {class: "muted"}, "none recorded");
  const neighbour = ([f, cos]) => linked
    ? el("a", {class: "pill pos", href: `#/features/${enc(run)}?db=${enc(resp.db)}&f=${f}`}, `#${f} ${fmt(cos, 2)}`)
    : el("span", {class: "pill pos", title: `decoder cosine ${fmt(cos, 4)}`}, `#${f} ${fmt(cos, 2)}`);
  return el("div", {class: "card", id: "feature-card"},
    el("h2", {}, `Feature ${resp.feature}`, resp.label ? ` — ${resp.label}` : ""),
    el("div", {class: "stats"},
      [["frequency", c.frequency], ["max activation", c.max_act], ["mean (active)", c.mean_active],
       ["active tokens", c.n_active]].map(([k, v]) => el("div", {}, el("span", {class: "muted"}, k),
                                                         el("b", {}, fmt(v, 4))))),
    linked ? el("p", {}, el("a", {href: `#/steer/${enc(run)}?feature=${resp.feature}`}, "steer with this feature →"))
           : [],
    el("h3", {}, "Activation histogram (log-spaced bins)"), histogram(c.hist || [], c.hist_edges),
    el("div", {class: "grid2"},
      el("div", {}, el("h3", {}, "Promotes (logit effect)"), pills(c.promoted || [], "pos")),
      el("div", {}, el("h3", {}, "Suppresses"), pills(c.suppressed || [], "neg"))),
    (c.neighbours || []).length ? [el("h3", {}, "Nearest features (decoder cosine)"),
      el("p", {}, c.neighbours.map(neighbour))] : [],
    el("h3", {}, "Top activating examples"),
    (c.top_examples || []).length ? c.top_examples.map(renderTokens) : el("p", {class: "muted"}, "no examples"),
    (c.quantile_examples || []).some((q) => q.length) ? [el("h3", {}, "Examples by activation quantile"),
      c.quantile_examples.map((q, i) => q.length ? [el("div", {class: "muted"}, `quantile ${i}`),
                                                    q.map(renderTokens)] : [])] : [],
    linked && resp.dashboard ? [el("h3", {}, `Dashboard (${resp.dashboard})`),
      el("iframe", {class: "dash", id: "dashboard", title: "feature dashboard",
                    src: `/api/runs/${enc(run)}/files/${encPath(resp.dashboard)}`})] : []);
}
