/* mechscope web UI: hash routes -> views. Every view reads the JSON API (see /docs). */
"use strict";

const view = () => document.getElementById("view");
const state = {runs: null};

async function runs() {
  if (!state.runs) state.runs = await api("/api/runs");
  return state.runs;
}
function setView(...children) { view().replaceChildren(...children.flat(Infinity)); }
function runSelect(names, current, onchange) {
  return el("select", {id: "run-select", onchange: (e) => onchange(e.target.value)},
            names.map((n) => el("option", {value: n, selected: n === current}, n)));
}

// ---------------------------------------------------------------- runs
async function viewRuns() {
  const list = await runs();
  if (!list.length) return setView(el("h1", {}, "Runs"),
    el("p", {class: "muted"}, "No run folders found. Run e.g. `mechscope tour --out DIR/tour`, then refresh."));
  setView(el("h1", {}, "Runs"), el("div", {class: "card"}, el("table", {},
    el("tr", {}, el("th", {}, "run"), el("th", {}, "contents")),
    list.map((r) => el("tr", {}, el("td", {}, el("a", {href: `#/run/${enc(r.name)}`}, r.name)),
                       el("td", {}, r.summary))))));
}

async function viewRun(name) {
  const r = await api(`/api/runs/${enc(name)}`);
  const file = (p) => `/api/runs/${enc(name)}/files/${encPath(p)}`;
  const section = (title, items, render) => items.length ? [el("h2", {}, title), el("div", {class: "card"}, render)]
                                                         : [];
  setView(el("h1", {}, `Run ${r.name}`), el("p", {class: "muted"}, r.summary),
    section("Dictionaries", r.dictionaries, el("table", {},
      el("tr", {}, ["path", "architecture", "hook point", "d_in", "d_sae", ""].map((h) => el("th", {}, h))),
      r.dictionaries.map((d) => el("tr", {}, el("td", {}, d.path), el("td", {}, d.architecture || "?"),
        el("td", {}, d.hook_name || "?"), el("td", {}, d.d_in ?? ""), el("td", {}, d.d_sae ?? ""),
        el("td", {}, el("a", {href: `#/steer/${enc(name)}?dictionary=${enc(d.path)}`}, "steer…")))))),
    section("Feature databases", r.feature_dbs, r.feature_dbs.map((p) => el("div", {},
      el("a", {href: `#/features/${enc(name)}?db=${enc(p)}`}, p)))),
    section("Attribution graphs", r.graphs, r.graphs.map((p) => el("div", {},
      el("a", {href: `#/graph/${enc(name)}?path=${enc(p)}`}, p)))),
    section("Reports", r.reports, r.reports.map((p) => el("div", {},
      el("a", {href: file(p), target: "_blank", rel: "noopener"}, p)))),
    section("Dashboards", r.dashboards, el("p", {}, `${r.dashboards.length} pages, e.g. `,
      r.dashboards.slice(0, 5).map((p) => el("a", {href: file(p), target: "_blank", rel: "noopener"}, p + " ")))),
    r.eval ? [el("h2", {}, "Evaluation (eval.json)"), el("div", {class: "card kv"},
      Object.entries(r.eval).map(([k, v]) => [el("span", {class: "muted"}, k),
        el("span", {}, typeof v === "object" ? JSON.stringify(v) : fmt(v, 4))]))] : [],
    r.last_metrics ? [el("h2", {}, `Training metrics (${r.metrics[0]}, last line)`), el("div", {class: "card kv"},
      Object.entries(r.last_metrics).map(([k, v]) => [el("span", {class: "muted"}, k), el("span", {}, fmt(v, 5))]))]
      : []);
}

// ---------------------------------------------------------------- features
// renderTokens, histogram and renderCard live in card.js (shared with mechscope.display).

async function viewFeatures(run, params) {
  const names = (await runs()).map((r) => r.name);
  if (!names.length) return setView(errorBox("No runs are served."));
  run = run || names[0];
  const db = params.get("db") || undefined;
  const q = params.get("q") || "";
  const input = el("input", {type: "search", id: "feature-query", value: q, size: 34,
                             placeholder: "words, token:WORD or a feature number"});
  const hits = el("ul", {class: "hits", id: "feature-hits"});
  const detail = el("div", {id: "feature-detail"}, el("p", {class: "muted"}, "Pick a feature on the left."));
  const go = (e) => { if (e) e.preventDefault();
    location.hash = `#/features/${enc(run)}?` + new URLSearchParams({...(db ? {db} : {}), q: input.value}); };
  setView(el("h1", {}, "Features"),
    el("form", {class: "inline", onsubmit: go}, el("label", {}, "run", runSelect(names, run,
      (r) => { location.hash = `#/features/${enc(r)}`; })), el("label", {}, "search", input),
      el("button", {type: "submit", id: "feature-search"}, "Search")),
    el("div", {class: "layout-side"}, el("div", {class: "card"}, hits), detail));
  let res;
  try {
    res = await api(`/api/runs/${enc(run)}/features?` + new URLSearchParams({q, ...(db ? {db} : {})}));
  } catch (e) { hits.replaceWith(errorBox(e.message)); return; }
  if (!res.hits.length) hits.append(el("li", {class: "muted"}, "no matching features"));
  const open = async (f, li) => {
    hits.querySelectorAll("li").forEach((x) => x.classList.toggle("sel", x === li));
    detail.replaceChildren(spinner(`loading feature ${f}…`));
    try {
      const card = await api(`/api/runs/${enc(run)}/features/${f}?` + new URLSearchParams({db: res.db}));
      detail.replaceChildren(renderCard(card, run));
    } catch (e) { detail.replaceChildren(errorBox(e.message)); }
  };
  for (const h of res.hits) {
    const li = el("li", {dataset: {feature: h.feature}}, el("span", {class: "fid"}, `#${h.feature}`),
      el("span", {class: "muted"}, `freq ${fmt(h.frequency, 4)} · max ${fmt(h.max_activation, 2)}`),
      el("span", {class: "lbl"}, h.label || ""));
    li.addEventListener("click", () => open(h.feature, li));
    hits.append(li);
  }
  hits.prepend(el("li", {class: "muted"}, `${res.hits.length} hits in ${res.db} (${res.total} features)`));
  const f = params.get("f");
  if (f !== null) open(parseInt(f, 10), hits.querySelector(`li[data-feature="${CSS.escape(f)}"]`));
}

// ---------------------------------------------------------------- graph
async function viewGraph(run, params) {
  const list = await runs();
  const withGraphs = [];
  for (const r of list) if (/graph/.test(r.summary)) withGraphs.push(r.name);
  if (!withGraphs.length) return setView(el("h1", {}, "Attribution graph"),
                                         el("p", {class: "muted"}, "No run holds a graph.json."));
  run = run || withGraphs[0];
  const detail = await api(`/api/runs/${enc(run)}`);
  const path = params.get("path") || detail.graphs[0];
  const pick = el("select", {id: "graph-select", onchange: (e) => {
    location.hash = `#/graph/${enc(run)}?path=${enc(e.target.value)}`; }},
    detail.graphs.map((p) => el("option", {value: p, selected: p === path}, p)));
  const holder = el("div", {id: "graph-holder"}, spinner("loading graph…"));
  const side = el("div", {class: "card", id: "node-panel"}, el("p", {class: "muted"},
    "Click a node to see its feature card; hover links for their weights."));
  setView(el("h1", {}, "Attribution graph"),
    el("form", {class: "inline"}, el("label", {}, "run", runSelect(withGraphs, run,
      (r) => { location.hash = `#/graph/${enc(r)}`; })), el("label", {}, "graph", pick)),
    el("div", {class: "layout-graph"}, el("div", {}, holder), side));
  if (!path) return holder.replaceChildren(el("p", {class: "muted"}, "This run has no graph."));
  let g;
  try { g = await api(`/api/runs/${enc(run)}/graphs/${encPath(path)}`); }
  catch (e) { return holder.replaceChildren(errorBox(e.message)); }
  const title = graphSummary(g);
  holder.replaceChildren(title);
  const box = el("div", {});
  holder.append(box);
  renderGraph(box, g, async (node) => {
    side.replaceChildren(el("h3", {}, node.node_id), el("p", {class: "muted"}, nodeLabel(node)),
                         spinner("loading card…"));
    try {
      const r = await api(`/api/runs/${enc(run)}/node-card?` + new URLSearchParams({node_id: node.node_id}));
      side.lastChild.remove();
      if (!r.card) side.append(el("p", {class: "muted"}, r.message));
      else side.append(renderCard({...r, label: r.card.explanation || ""}, run));
    } catch (e) { side.lastChild.replaceWith(errorBox(e.message)); }
  });
}

// ---------------------------------------------------------------- steering
async function viewSteer(run, params) {
  const names = (await runs()).map((r) => r.name);
  const withDicts = [];
  for (const n of names) withDicts.push(n);
  run = run || names[0];
  const detail = run ? await api(`/api/runs/${enc(run)}`) : {dictionaries: []};
  const dicts = detail.dictionaries.map((d) => d.path);
  const dsel = el("select", {id: "steer-dictionary"}, dicts.map((p) => el("option", {value: p,
    selected: p === params.get("dictionary")}, `${p} (${(detail.dictionaries.find((d) => d.path === p) || {})
      .hook_name || "?"})`)));
  const feature = el("input", {type: "number", id: "steer-feature", min: 0, value: params.get("feature") || 0});
  const strength = el("input", {type: "number", id: "steer-strength", step: "any", value: params.get("strength") || 2});
  const tokens = el("input", {type: "number", id: "steer-tokens", min: 1, max: 64, value: 16});
  const prompt = el("textarea", {id: "steer-prompt"}, params.get("prompt") || "My favourite animal is");
  const out = el("div", {id: "steer-output"});
  const button = el("button", {type: "submit", id: "steer-run"}, "Generate");
  const submit = async (e) => {
    e.preventDefault();
    button.disabled = true;
    out.replaceChildren(spinner("generating with and without steering (queued on the model thread)…"));
    try {
      const r = await api("/api/steer", {run, dictionary: dsel.value, feature: parseInt(feature.value, 10),
        strength: parseFloat(strength.value), prompt: prompt.value, max_new_tokens: parseInt(tokens.value, 10)});
      out.replaceChildren(el("div", {class: "outputs"},
        el("div", {}, el("h3", {}, "Without steering"),
           el("pre", {id: "steer-baseline"}, el("span", {class: "prompt"}, r.prompt), r.baseline)),
        el("div", {}, el("h3", {}, `With feature ${r.feature} added at ${r.hook_name}`),
           el("pre", {id: "steer-steered"}, el("span", {class: "prompt"}, r.prompt), r.steered))),
        el("p", {class: "muted", id: "steer-note"},
           `added: ${fmt(r.strength)} × max activation ${r.max_activation === null ? "(no feature database: 1)" :
             fmt(r.max_activation, 3)} × decoder direction` +
           (r.baseline_feature_act === null || r.baseline_feature_act === undefined ? "" :
             ` · feature activation on the prompt ${fmt(r.baseline_feature_act, 3)} → ${fmt(r.steered_feature_act, 3)}`) +
           ` · greedy decoding, ${fmt(r.seconds, 2)} s`));
    } catch (err) { out.replaceChildren(errorBox(err.message)); }
    button.disabled = false;
  };
  setView(el("h1", {}, "Steering playground"),
    el("form", {class: "card", onsubmit: submit},
      el("div", {class: "inline"}, el("label", {}, "run", runSelect(names, run,
        (r) => { location.hash = `#/steer/${enc(r)}`; })), el("label", {}, "dictionary", dsel),
        el("label", {}, "feature", feature), el("label", {title: "multiple of the feature's max activation"}, "strength (× max act)", strength),
        el("label", {}, "new tokens", tokens)),
      el("label", {}, "prompt", prompt), el("p", {}, button)),
    dicts.length ? out : errorBox(`run ${run} has no dictionary folder to steer with`));
  if (!dicts.length) button.disabled = true;
}

// ---------------------------------------------------------------- lens and patching
function viewLens() {
  const lensPrompt = el("textarea", {id: "lens-prompt"}, "The Eiffel Tower is in the city of");
  const lensOut = el("div", {id: "lens-output"});
  const lensBtn = el("button", {type: "submit", id: "lens-run"}, "Logit lens");
  const clean = el("input", {id: "patch-clean", size: 60, value: "When Mary and John went to the store, John gave a drink to"});
  const corrupted = el("input", {id: "patch-corrupted", size: 60, value: "When Mary and John went to the store, Mary gave a drink to"});
  const answer = el("input", {id: "patch-answer", size: 8, value: " Mary"});
  const wrong = el("input", {id: "patch-wrong", size: 8, value: " John"});
  const kind = el("select", {id: "patch-kind"}, ["resid_pre", "attn_out", "mlp_out"].map((k) => el("option", {}, k)));
  const step = el("input", {type: "number", id: "patch-step", min: 1, max: 8, value: 3});
  const patchOut = el("div", {id: "patch-output"});
  const patchBtn = el("button", {type: "submit", id: "patch-run"}, "Patch");
  const runJob = (btn, out, path, body, opts, msg) => async (e) => {
    e.preventDefault(); btn.disabled = true;
    out.replaceChildren(spinner(msg));
    try { out.replaceChildren(renderHeatmap(await api(path, body()), opts)); }
    catch (err) { out.replaceChildren(errorBox(err.message)); }
    btn.disabled = false;
  };
  setView(el("h1", {}, "Logit lens and activation patching"),
    el("form", {class: "card", onsubmit: runJob(lensBtn, lensOut, "/api/lens", () => ({prompt: lensPrompt.value}),
                                                {}, "running the logit lens…")},
      el("h2", {}, "Logit lens"), el("p", {class: "muted"},
        "Top token decoded from the residual stream entering each layer, at every position."),
      el("label", {}, "prompt", lensPrompt), el("p", {}, lensBtn)), lensOut,
    el("form", {class: "card", onsubmit: runJob(patchBtn, patchOut, "/api/patch", () => ({clean: clean.value,
        corrupted: corrupted.value, answer: answer.value, wrong: wrong.value, kind: kind.value,
        layer_step: parseInt(step.value, 10)}), {diverging: true}, "patching (layers × positions)…")},
      el("h2", {}, "Activation patching"), el("p", {class: "muted"},
        "Denoising: run the corrupted prompt, patch one layer × position from the clean run, measure the logit " +
        "difference answer − wrong (normalised: 1 = clean behaviour restored). Prompts need equal token counts."),
      el("div", {class: "inline"}, el("label", {}, "clean", clean), el("label", {}, "corrupted", corrupted)),
      el("div", {class: "inline"}, el("label", {}, "answer", answer), el("label", {}, "wrong", wrong),
        el("label", {}, "hook", kind), el("label", {}, "every n-th layer", step), el("p", {}, patchBtn))),
    patchOut);
}

// ---------------------------------------------------------------- router
async function route() {
  tooltip.hide();
  const [pathPart, query] = (location.hash.slice(1) || "/runs").split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  const tab = parts[0] === "run" ? "runs" : parts[0] === "feature" ? "features" : parts[0];
  document.querySelectorAll("header nav a[data-tab]").forEach((a) =>
    a.classList.toggle("active", a.dataset.tab === tab));
  try {
    if (parts[0] === "run" && parts[1]) await viewRun(parts[1]);
    else if (parts[0] === "features") await viewFeatures(parts[1], params);
    else if (parts[0] === "graph") await viewGraph(parts[1], params);
    else if (parts[0] === "steer") await viewSteer(parts[1], params);
    else if (parts[0] === "lens") viewLens();
    else { state.runs = null; await viewRuns(); }
  } catch (e) { setView(errorBox(e.message)); }
}

async function modelStatus() {
  try {
    const m = await api("/api/model");
    document.getElementById("model-status").textContent =
      `model ${m.name}: ${m.error ? "error" : m.busy ? "busy" : m.loaded ? "loaded" : "loads on first use"}`;
  } catch (e) { /* the status line is informative only */ }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => { route(); modelStatus(); setInterval(modelStatus, 5000); });
