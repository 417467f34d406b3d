/* Attribution-graph viewer (circuit-tracer JSON: metadata, nodes, links) in plain SVG.
   Rows are layers (tokens at the bottom, logits on top), columns are prompt positions. Hover a link for its
   weight, hover a node for its description, click a node to select it (its links stay highlighted), and prune
   links below a threshold with the slider (feature and error nodes left without links are hidden). */
"use strict";

const NODE_FILL = {"embedding": "#a7f3d0", "logit": "#fcd34d", "mlp reconstruction error": "#d1d5db"};

function rowKey(n) {
  if (n.feature_type === "embedding" || n.layer === "E") return -1;
  if (n.feature_type === "logit") return 1e6;
  const l = parseInt(n.layer, 10);
  return Number.isNaN(l) ? 0 : l;
}

function nodeLabel(n) {
  const kind = n.feature_type || "node";
  const parts = [`${n.node_id} (${kind})`];
  if (n.clerp) parts.push(n.clerp);
  if (n.activation !== null && n.activation !== undefined) parts.push(`activation ${fmt(n.activation)}`);
  if (n.influence !== null && n.influence !== undefined) parts.push(`influence ${fmt(n.influence)}`);
  if (kind === "logit" && n.token_prob) parts.push(`p = ${fmt(n.token_prob)}`);
  return parts.join(" · ");
}

const SCORE_HELP = {
  replacement_score: "replacement score (circuit-tracer): fraction of the logits' influence that reaches the " +
    "prompt tokens through features rather than ending at error nodes (1 = no error node on any path)",
  completeness_score: "completeness score (circuit-tracer): influence-weighted fraction of every node's input " +
    "that does not come from error nodes",
};

/** The graph's summary line: prompt, node and link counts, and the replacement / completeness scores of the
    unpruned graph when the metadata carries them (hover a score for its definition). */
function graphSummary(graph) {
  const meta = graph.metadata || {};
  const line = el("p", {class: "muted", id: "graph-summary"},
    `prompt: ${JSON.stringify(meta.prompt || "")} · ${graph.nodes.length} nodes, ${graph.links.length} links`);
  for (const [key, label] of [["replacement_score", "replacement score"],
                              ["completeness_score", "completeness score"]]) {
    if (!(key in meta)) continue;
    line.append(" · ", el("span", {class: "graph-score", title: SCORE_HELP[key], dataset: {score: key}},
                          `${label} ${fmt(meta[key])}`));
  }
  return line;
}

/** Draw `graph` into `container`; `onSelect(node)` is called when a node is clicked. Returns {select(id)}. */
function renderGraph(container, graph, onSelect) {
  const W = 1000, H = 620, left = 70, bottom = 70, top = 24, right = 20;
  const tokens = (graph.metadata && graph.metadata.prompt_tokens) || [];
  const nPos = Math.max(tokens.length, 1 + Math.max(0, ...graph.nodes.map((n) => n.ctx_idx)));
  const rows = [...new Set(graph.nodes.map(rowKey))].sort((a, b) => a - b);
  const rowY = new Map(rows.map((r, i) => [r, H - bottom - (i + 0.5) * (H - bottom - top) / rows.length]));
  const colW = (W - left - right) / nPos;
  const groups = new Map();
  for (const n of graph.nodes) {
    const k = `${rowKey(n)}|${n.ctx_idx}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(n);
  }
  const pos = new Map();
  for (const list of groups.values()) {
    const step = Math.min(16, colW / (list.length + 1));
    list.forEach((n, i) => pos.set(n.node_id, {
      x: left + (n.ctx_idx + 0.5) * colW + (i - (list.length - 1) / 2) * step, y: rowY.get(rowKey(n))}));
  }
  const maxAbs = Math.max(1e-9, ...graph.links.map((l) => Math.abs(l.weight)));
  const svg = el("svg", {class: "graph", viewBox: `0 0 ${W} ${H}`, role: "img",
                         "aria-label": "attribution graph"});
  const axis = el("g", {});
  rows.forEach((r) => axis.append(el("text", {class: "axis", x: 8, y: rowY.get(r) + 4},
    r === -1 ? "tokens" : r === 1e6 ? "logits" : `L${r}`)));
  for (let p = 0; p < nPos; p++) {
    const x = left + (p + 0.5) * colW;
    axis.append(el("text", {class: "axis", x, y: H - bottom + 18, "text-anchor": "middle"}, `${p}`));
    axis.append(el("text", {class: "axis", x, y: H - bottom + 34, "text-anchor": "middle"},
                   JSON.stringify(tokens[p] ?? "").slice(0, 14)));
  }
  const linkLayer = el("g", {}), nodeLayer = el("g", {});
  svg.append(axis, linkLayer, nodeLayer);

  const linkEls = graph.links.map((l) => {
    const a = pos.get(l.source), b = pos.get(l.target);
    const mx = (a.x + b.x) / 2 + (a.y - b.y) * 0.08;
    const path = el("path", {class: "link", d: `M${a.x},${a.y} Q${mx},${(a.y + b.y) / 2} ${b.x},${b.y}`,
      stroke: l.weight >= 0 ? "#2563eb" : "#dc2626", "stroke-width": 0.6 + 5 * Math.abs(l.weight) / maxAbs,
      "stroke-opacity": 0.55, dataset: {source: l.source, target: l.target},
      onmousemove: (e) => tooltip.show(e, `${l.source} → ${l.target}: weight ${fmt(l.weight, 4)}`),
      onmouseleave: () => tooltip.hide()});
    linkLayer.append(path);
    return {link: l, path};
  });
  const nodeEls = new Map();
  for (const n of graph.nodes) {
    const p = pos.get(n.node_id);
    const isFeature = n.feature_type === "cross layer transcoder" || n.feature_type === "transcoder";
    const attrs = {class: "node", fill: NODE_FILL[n.feature_type] || "#93c5fd", dataset: {nodeId: n.node_id},
      onmousemove: (e) => tooltip.show(e, nodeLabel(n)), onmouseleave: () => tooltip.hide(),
      onclick: () => select(n.node_id)};
    const shape = isFeature ? el("circle", {...attrs, cx: p.x, cy: p.y, r: 7})
                            : el("rect", {...attrs, x: p.x - 7, y: p.y - 7, width: 14, height: 14, rx: 2});
    nodeLayer.append(shape);
    nodeEls.set(n.node_id, {node: n, shape});
  }

  let selected = null, threshold = 0;
  function refresh() {
    const live = new Set();
    for (const {link, path} of linkEls) {
      const on = Math.abs(link.weight) >= threshold;
      path.style.display = on ? "" : "none";
      if (on) { live.add(link.source); live.add(link.target); }
      const touch = selected && (link.source === selected || link.target === selected);
      path.classList.toggle("dim", Boolean(selected) && !touch);
    }
    for (const [id, {node, shape}] of nodeEls) {
      const always = node.feature_type === "embedding" || node.feature_type === "logit";
      shape.style.display = always || live.has(id) ? "" : "none";
      shape.classList.toggle("sel", id === selected);
    }
    const shown = linkEls.filter((x) => Math.abs(x.link.weight) >= threshold).length;
    count.textContent = `${shown} of ${linkEls.length} links with |weight| ≥ ${fmt(threshold, 3)}`;
  }
  function select(id) {
    selected = id;
    refresh();
    if (onSelect && nodeEls.has(id)) onSelect(nodeEls.get(id).node);
  }
  const slider = el("input", {type: "range", min: 0, max: 100, value: 0, id: "threshold",
                              "aria-label": "link weight threshold",
                              oninput: (e) => { threshold = maxAbs * e.target.value / 100; refresh(); }});
  const count = el("span", {class: "muted", id: "link-count"});
  const legend = el("span", {class: "muted"},
    "● feature  ■ token (green) / error (grey) / logit (yellow) · blue links positive, red negative");
  container.replaceChildren(el("div", {class: "controls"}, el("label", {}, "prune: |weight| threshold", slider),
                                count, legend), svg);
  refresh();
  return {select};
}
