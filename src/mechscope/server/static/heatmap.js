/* Heatmaps as HTML tables: rows × columns, a value per cell (colour), optional text per cell, hover for values. */
"use strict";

/** Render {title, row_labels, col_labels, values, cell_text, value_name} into a table; diverging or sequential. */
function renderHeatmap(hm, {diverging = false} = {}) {
  const flat = hm.values.flat().filter((v) => v !== null);
  const maxAbs = Math.max(1e-9, ...flat.map(Math.abs));
  const head = el("tr", {}, el("th", {}, ""), hm.col_labels.map((c) => el("th", {title: c}, c)));
  const rows = hm.values.map((row, i) => el("tr", {},
    el("th", {}, hm.row_labels[i]),
    row.map((v, j) => {
      const t = v === null ? 0 : (diverging ? v / maxAbs : v / maxAbs);
      const text = hm.cell_text ? hm.cell_text[i][j] : fmt(v, 2);
      const tip = `${hm.row_labels[i]} × ${hm.col_labels[j]}: ${hm.value_name} = ${fmt(v, 4)}` +
                  (hm.cell_text ? ` (top: ${JSON.stringify(hm.cell_text[i][j])})` : "");
      const td = el("td", {style: {background: diverging ? divColor(t) : seqColor(t), color: textColorFor(t)},
                           onmousemove: (e) => tooltip.show(e, tip), onmouseleave: () => tooltip.hide()},
                    text.length > 10 ? text.slice(0, 9) + "…" : text);
      return td;
    })));
  const legend = el("div", {class: "legend"},
    `${hm.value_name}; colour scale ${diverging ? "−" + fmt(maxAbs) : "0"} … ${fmt(maxAbs)}` +
    (diverging ? " (red negative, blue positive)" : " (white → blue)") + ". Hover a cell for its value.");
  return el("div", {class: "card"}, el("h3", {}, hm.title), legend,
            el("div", {class: "heatmap"}, el("table", {class: "hm"}, el("thead", {}, head), el("tbody", {}, rows))));
}
