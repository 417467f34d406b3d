/* Offline API reference: renders /openapi.json (FastAPI's Swagger page needs a CDN, so it is replaced). */
"use strict";

function schemaText(s, spec, depth = 0) {
  if (!s) return "";
  if (s.$ref) {
    const name = s.$ref.split("/").pop();
    return depth > 1 ? name : `${name} ${schemaText(spec.components.schemas[name], spec, depth + 1)}`;
  }
  if (s.anyOf) return s.anyOf.map((x) => schemaText(x, spec, depth)).join(" | ");
  if (s.type === "array") return `[${schemaText(s.items, spec, depth)}]`;
  if (s.type === "object" && s.properties) {
    return "{" + Object.entries(s.properties).map(([k, v]) =>
      `${k}${(s.required || []).includes(k) ? "" : "?"}: ${schemaText(v, spec, depth + 1)}`).join(", ") + "}";
  }
  const bounds = ["minimum", "maximum", "minLength", "maxLength", "pattern"].filter((k) => k in s)
    .map((k) => `${k}=${s[k]}`);
  return (s.enum ? s.enum.map((x) => JSON.stringify(x)).join("|") : s.type || "any") +
         (bounds.length ? ` (${bounds.join(", ")})` : "");
}

async function main() {
  const spec = await api("/openapi.json");
  const view = document.getElementById("view");
  const items = [];
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map((p) => el("tr", {}, el("td", {}, p.name), el("td", {}, p.in),
        el("td", {}, schemaText(p.schema, spec)), el("td", {}, p.description || p.schema.description || "")));
      const body = op.requestBody && op.requestBody.content["application/json"];
      const ok = op.responses && op.responses["200"] && op.responses["200"].content &&
                 op.responses["200"].content["application/json"];
      items.push(el("div", {class: "card"},
        el("h2", {}, el("code", {}, `${method.toUpperCase()} ${path}`), `  ${op.summary || ""}`),
        op.description ? el("p", {}, op.description) : null,
        params.length ? el("table", {}, el("tr", {}, ["parameter", "in", "type", ""].map((h) => el("th", {}, h))),
                           params) : null,
        body ? el("p", {}, el("b", {}, "body: "), el("code", {}, schemaText(body.schema, spec))) : null,
        ok ? el("p", {}, el("b", {}, "200: "), el("code", {}, schemaText(ok.schema, spec))) : null));
    }
  }
  view.replaceChildren(el("h1", {}, `${spec.info.title} API ${spec.info.version}`),
    el("p", {class: "muted"}, spec.info.description || ""),
    el("p", {}, "Machine-readable contract: ", el("a", {href: "/openapi.json"}, "/openapi.json"),
       ". Errors answer {\"error\": message} with a 4xx/5xx status."), ...items);
}
window.addEventListener("DOMContentLoaded", () => main().catch((e) =>
  document.getElementById("view").replaceChildren(errorBox(e.message))));
