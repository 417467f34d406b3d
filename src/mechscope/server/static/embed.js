/* Mount a mechscope.display view (a JSON spec) into a host element of a notebook output or a report page.
   The view lives in a shadow root with the web UI's stylesheet, so it looks like the web UI and neither leaks
   styles into the page nor takes any from it. Nothing is fetched: every script and style comes inline. */
"use strict";

function ensureTooltip() {
  if (document.getElementById("tooltip")) return;
  const t = el("div", {id: "tooltip", class: "tooltip", hidden: true, style: {position: "fixed",
    pointerEvents: "none", background: "#1d2330", color: "#fff", padding: "5px 8px", borderRadius: "5px",
    font: "12px system-ui, sans-serif", maxWidth: "360px", zIndex: 10000}});
  document.body.append(t);
}

function renderKV(pairs) {
  return el("div", {class: "kv"}, pairs.map(([k, v]) => [el("span", {class: "muted"}, k),
    el("span", {}, typeof v === "number" ? fmt(v, 4) : v === null ? "–" : String(v))]));
}

function renderGraphView(v) {
  const side = el("div", {class: "card", id: "node-panel"}, el("p", {class: "muted"},
    "Click a node for its details" + (v.cards && Object.keys(v.cards).length ? " and feature card" : "") +
    "; hover links for their weights."));
  const box = el("div", {});
  const meta = v.graph.metadata || {};
  const summary = typeof graphSummary === "function" ? graphSummary(v.graph) : el("p", {class: "muted"},
    `prompt: ${JSON.stringify(meta.prompt || "")} · ${v.graph.nodes.length} nodes, ${v.graph.links.length} links`);
  const out = el("div", {}, v.title ? el("h3", {}, v.title) : [], summary,
                 el("div", {class: "layout-graph"}, box, side));
  renderGraph(box, v.graph, (node) => {
    const card = (v.cards || {})[node.node_id];
    side.replaceChildren(el("h3", {}, node.node_id), el("p", {class: "muted"}, nodeLabel(node)),
      card ? renderCard({feature: card.feature, label: card.explanation || "", card}) :
             el("p", {class: "muted"}, node.feature_type === "cross layer transcoder" || node.feature_type ===
               "transcoder" ? "no feature card attached (pass cards= to the view)" : "not a feature node"));
  });
  return out;
}

function msRender(v) {
  switch (v.kind) {
    case "heatmap": return renderHeatmap(v, {diverging: Boolean(v.diverging)});
    case "lines": return renderLinePlot(v);
    case "bars": return renderBars(v);
    case "table": return renderTable(v);
    case "card": return renderCard({feature: v.card.feature, label: v.card.explanation || "", card: v.card});
    case "graph": return renderGraphView(v);
    case "attention": return renderAttention(v);
    case "text": return el("div", {class: "card"}, v.title ? el("h3", {}, v.title) : [],
                           el("pre", {class: "text"}, v.text));
    case "kv": return el("div", {class: "card"}, v.title ? el("h3", {}, v.title) : [], renderKV(v.pairs));
    case "empty": return el("div", {class: "card empty"}, el("h3", {}, v.title),
                            el("p", {class: "muted"}, v.reason));
    case "panel": return el("div", {class: "panel"}, el("h2", {}, v.title),
      v.summary && v.summary.length ? el("div", {class: "card"}, renderKV(v.summary)) : [],
      (v.children || []).map(msRender));
    default: return errorBox(`unknown view kind ${JSON.stringify(v.kind)}`);
  }
}

/** Render the spec in the JSON script `dataId` into the element `hostId` (inside a fresh shadow root). */
function msMount(hostId, dataId, css) {
  const host = document.getElementById(hostId), data = document.getElementById(dataId);
  if (!host || !data || host.shadowRoot) return;
  ensureTooltip();
  let node;
  try { node = msRender(JSON.parse(data.textContent)); }
  catch (e) { node = errorBox(`mechscope view failed: ${e.message}`); }
  const root = host.attachShadow({mode: "open"});
  const style = document.createElement("style");
  style.textContent = css;
  const wrap = el("div", {class: "ms-root"}, node);
  root.append(style, wrap);
}
