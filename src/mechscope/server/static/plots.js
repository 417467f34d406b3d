/* Line plots, bar charts and tables in plain SVG / HTML with hover values (the shared tooltip).
   Used by mechscope.display for notebook and report views; same colours and fonts as the web UI. */
"use strict";

const SERIES_COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const finiteVals = (xs) => xs.filter((v) => v !== null && v !== undefined && Number.isFinite(v));

function niceTicks(lo, hi, n = 5) {
  const out = [];
  for (let i = 0; i <= n; i++) out.push(lo + (hi - lo) * i / n);
  return out;
}

/** {title, x_labels, series: [{name, values}], y_label}: one line per series, a dot per value (hover it). */
function renderLinePlot(p) {
  const W = 660, H = 290, left = 58, right = 14, top = 12, bottom = 58;
  const all = finiteVals(p.series.flatMap((s) => s.values));
  let lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 1;
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
  const n = p.x_labels.length;
  const x = (i) => left + (n <= 1 ? (W - left - right) / 2 : i * (W - left - right) / (n - 1));
  const y = (v) => top + (hi - v) * (H - top - bottom) / (hi - lo);
  const svg = el("svg", {class: "plot", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
                         "aria-label": p.title || "line plot"});
  const axes = el("g", {class: "axes"});
  for (const t of niceTicks(lo, hi)) {
    axes.append(el("line", {x1: left, x2: W - right, y1: y(t), y2: y(t), class: "gridline"}),
                el("text", {x: left - 6, y: y(t) + 4, "text-anchor": "end", class: "axis"}, fmt(t, 3)));
  }
  const step = Math.max(1, Math.ceil(n / 30));
  p.x_labels.forEach((lab, i) => {
    if (i % step) return;
    axes.append(el("text", {x: x(i), y: H - bottom + 14, "text-anchor": "end", class: "axis",
                            transform: `rotate(-45 ${x(i)} ${H - bottom + 14})`}, String(lab).slice(0, 14)));
  });
  if (p.y_label) axes.append(el("text", {x: 12, y: top + (H - top - bottom) / 2, class: "axis",
    "text-anchor": "middle", transform: `rotate(-90 12 ${top + (H - top - bottom) / 2})`}, p.y_label));
  svg.append(axes);
  p.series.forEach((s, si) => {
    const colour = SERIES_COLORS[si % SERIES_COLORS.length];
    let d = "", pen = "M";
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = "M"; return; }
      d += `${pen}${x(i)},${y(v)} `; pen = "L";
    });
    svg.append(el("path", {d, fill: "none", stroke: colour, "stroke-width": 1.8}));
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      svg.append(el("circle", {cx: x(i), cy: y(v), r: 3.2, fill: colour, class: "pt",
        onmousemove: (e) => tooltip.show(e, `${s.name} · ${p.x_labels[i]}: ${fmt(v, 4)}`),
        onmouseleave: () => tooltip.hide()}));
    });
  });
  const legend = el("div", {class: "legend"}, p.series.map((s, si) => el("span", {class: "key"},
    el("span", {class: "swatch", style: {background: SERIES_COLORS[si % SERIES_COLORS.length]}}), s.name)),
    " · hover a point for its value");
  return el("div", {class: "card"}, p.title ? el("h3", {}, p.title) : [], svg, legend);
}

/** {title, labels, values, value_name}: horizontal bars from zero (blue positive, red negative). */
function renderBars(p) {
  const rowH = 20, left = 150, right = 64, W = 660, H = Math.max(1, p.labels.length) * rowH + 8;
  const mx = Math.max(1e-12, ...finiteVals(p.values).map(Math.abs));
  const anyNeg = finiteVals(p.values).some((v) => v < 0);
  const zero = anyNeg ? left + (W - left - right) / 2 : left;
  const scale = (anyNeg ? (W - left - right) / 2 : W - left - right) / mx;
  const svg = el("svg", {class: "plot", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
                         "aria-label": p.title || "bar chart"});
  svg.append(el("line", {x1: zero, x2: zero, y1: 0, y2: H, class: "gridline"}));
  p.labels.forEach((lab, i) => {
    const v = p.values[i], yy = 4 + i * rowH;
    svg.append(el("text", {x: left - 6, y: yy + rowH / 2 + 3, "text-anchor": "end", class: "axis"},
                  String(lab).slice(0, 24)));
    if (v === null || !Number.isFinite(v)) return;
    const w = Math.abs(v) * scale;
    svg.append(el("rect", {x: v >= 0 ? zero : zero - w, y: yy + 2, width: Math.max(w, 0.5), height: rowH - 5,
      fill: v >= 0 ? "#2563eb" : "#dc2626", class: "bar",
      onmousemove: (e) => tooltip.show(e, `${lab}: ${p.value_name || "value"} = ${fmt(v, 4)}`),
      onmouseleave: () => tooltip.hide()}));
    svg.append(el("text", {x: W - 4, y: yy + rowH / 2 + 3, class: "axis", "text-anchor": "end"}, fmt(v, 3)));
  });
  return el("div", {class: "card"}, p.title ? el("h3", {}, p.title) : [], svg,
            el("div", {class: "legend"}, `${p.value_name || "value"}; hover a bar for its value`));
}

/** {title, columns, rows}: a plain table; numbers shown with 4 significant digits, the full value on hover. */
function renderTable(p) {
  const cell = (v) => typeof v === "number" ? el("td", {class: "num", title: String(v)}, fmt(v, 4))
                                            : el("td", {}, v === null || v === undefined ? "–" : String(v));
  return el("div", {class: "card"}, p.title ? el("h3", {}, p.title) : [],
    el("table", {}, el("tr", {}, p.columns.map((c) => el("th", {}, c))),
       p.rows.map((r) => el("tr", {}, r.map(cell)))));
}
