/* Small helpers shared by the mechscope pages: DOM building, JSON API calls, colours, the tooltip. */
"use strict";

/** Create an element: el("div", {class: "x", onclick: fn}, child, "text", ...). Text is never parsed as HTML. */
function el(tag, attrs, ...children) {
  const svg = ["svg", "g", "line", "path", "circle", "rect", "text", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(node.style, v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** The API token of a server started with one: from the page's ?token= (the address `mechscope serve` prints),
 *  kept for this tab so that in-app navigation keeps working. Null when the server needs none. */
const apiToken = (() => {
  const fromUrl = new URLSearchParams(window.location.search).get("token");
  try {
    if (fromUrl) sessionStorage.setItem("mechscope-token", fromUrl);
    return fromUrl || sessionStorage.getItem("mechscope-token");
  } catch (e) { return fromUrl; }
})();

/** Call the JSON API (with the token header when there is one); throws an Error carrying the server's message on
 *  a non-2xx answer. */
async function api(path, body) {
  const headers = apiToken ? {"X-Mechscope-Token": apiToken} : {};
  const opts = body === undefined ? {headers} : {method: "POST", body: JSON.stringify(body),
                                                 headers: {...headers, "Content-Type": "application/json"}};
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

const enc = encodeURIComponent;
const encPath = (p) => p.split("/").map(enc).join("/");
function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
  return Number(x.toFixed(digits)).toString();
}
function errorBox(msg) { return el("div", {class: "error", role: "alert"}, msg); }
function spinner(text) { return el("p", {class: "muted"}, el("span", {class: "spinner"}), text); }

/** Sequential colour (white -> blue) for t in [0, 1]. */
function seqColor(t) {
  t = Math.max(0, Math.min(1, t || 0));
  const r = Math.round(255 - t * (255 - 37)), g = Math.round(255 - t * (255 - 99)), b = Math.round(255 - t * 20);
  return `rgb(${r},${g},${b})`;
}
/** Diverging colour (red <- white -> blue) for t in [-1, 1]. */
function divColor(t) {
  t = Math.max(-1, Math.min(1, t || 0));
  if (t >= 0) return seqColor(t);
  const a = -t;
  return `rgb(${Math.round(255 - a * 35)},${Math.round(255 - a * 217)},${Math.round(255 - a * 217)})`;
}
/** Warm highlight for token activations, t in [0, 1]. */
function actColor(t) {
  t = Math.max(0, Math.min(1, t || 0));
  return `rgba(249, 115, 22, ${0.08 + 0.75 * t})`;
}
function textColorFor(t) { return Math.abs(t) > 0.6 ? "#fff" : "#1d2330"; }

const tooltip = {
  show(evt, text) {
    const t = document.getElementById("tooltip");
    t.textContent = text; t.hidden = false;
    t.style.left = `${evt.clientX + 12}px`; t.style.top = `${evt.clientY + 12}px`;
  },
  hide() { document.getElementById("tooltip").hidden = true; },
};
