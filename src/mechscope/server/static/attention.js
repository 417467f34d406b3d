/* Per-head attention viewer: a thumbnail per head (click to select), the selected head's query × key pattern
   (hover a cell for its weight), and the prompt's tokens (hover a token to shade what it attends to). */
"use strict";

function attentionGrid(matrix, size, onHover) {
  const n = matrix.length, cell = size / Math.max(1, n);
  const svg = el("svg", {viewBox: `0 0 ${size} ${size}`, width: size, height: size, class: "attn"});
  matrix.forEach((row, q) => row.forEach((v, k) => {
    if (k > q && !v) return;  // causal: nothing above the diagonal
    svg.append(el("rect", {x: k * cell, y: q * cell, width: cell + 0.2, height: cell + 0.2,
      fill: seqColor(v), ...(onHover ? {onmousemove: (e) => onHover(e, q, k, v), onmouseleave: () => tooltip.hide()}
                                   : {})}));
  }));
  return svg;
}

/** {title, tokens: [str], heads: [label], patterns: [head][query][key]} */
function renderAttention(a) {
  const toks = a.tokens.map((t) => JSON.stringify(t));
  let current = 0;
  const main = el("div", {class: "attn-main"});
  const strip = el("div", {class: "attn-tokens"});
  const thumbs = el("div", {class: "attn-thumbs"});
  const thumbEls = a.heads.map((h, i) => {
    const t = el("div", {class: "attn-thumb", title: `head ${h}`, onclick: () => select(i)},
                 attentionGrid(a.patterns[i], 64, null), el("div", {class: "muted"}, h));
    thumbs.append(t);
    return t;
  });
  function shadeFrom(q) {
    strip.querySelectorAll("span.tok").forEach((s, k) => {
      const v = q === null ? 0 : (a.patterns[current][q][k] || 0);
      s.style.background = q !== null && k === q ? "#fde68a" : actColor(v);
      s.title = q === null ? toks[k] : `${toks[q]} → ${toks[k]}: ${fmt(v, 3)}`;
    });
  }
  function select(i) {
    current = i;
    thumbEls.forEach((t, j) => t.classList.toggle("sel", j === i));
    main.replaceChildren(el("h3", {}, `head ${a.heads[i]}: query (rows) × key (columns)`),
      attentionGrid(a.patterns[i], Math.min(520, 18 * a.tokens.length + 40), (e, q, k, v) =>
        tooltip.show(e, `query ${q} ${toks[q]} → key ${k} ${toks[k]}: ${fmt(v, 4)}`)),
      el("div", {class: "legend"}, "white 0 → blue 1; hover a cell for its weight"));
    shadeFrom(null);
  }
  a.tokens.forEach((t, q) => strip.append(el("span", {class: "tok", onmouseenter: () => shadeFrom(q),
                                                        onmouseleave: () => shadeFrom(null)}, t)));
  select(0);
  return el("div", {class: "card"}, a.title ? el("h3", {}, a.title) : [], thumbs,
            el("div", {class: "grid2"}, main, el("div", {}, el("h3", {}, "tokens (hover a query token)"), strip)));
}
