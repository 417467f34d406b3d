"""Report sections for what mechscope commands write into a run folder (see :mod:`.run_folder`).

Each builder fills a :class:`~.html.Section` from the files alone (JSON, JSONL, SQLite; no model, nothing
unpickled) and records in ``ctx["claimed"]`` the PNG files it has redrawn, so they are not embedded twice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import files
from .html import Section, esc

MAX_PNG_BYTES = 8 * 2**20
MAX_JSON_BYTES = 64 * 2**20


def read_json(path: Path) -> Any:
    return files.read_json(path, max_bytes=MAX_JSON_BYTES)


# ---------------------------------------------------------------------------------------------------- helpers
def fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def embed(s: Section, png: Path, caption: str, ctx: dict) -> None:
    ctx["claimed"].add(png)
    if png.stat().st_size > MAX_PNG_BYTES:
        s.text(f"<code>{esc(png.name)}</code> is too large to embed ({png.stat().st_size >> 20} MiB).")
        return
    s.image(png.read_bytes(), caption)


# ---------------------------------------------------------------------------------------------------- sections
def _train(s: Section, folder: Path, ctx: dict) -> None:
    from matplotlib.figure import Figure

    if (folder / "run.json").is_file():
        run = read_json(folder / "run.json")
        s.text(f"Model <code>{esc(run.get('model'))}</code>, {esc(run.get('steps'))} steps, "
               f"{esc(run.get('tokens'))} activation rows, hook points "
               + ", ".join(f"<code>{esc(h)}</code>" for h in run.get("hook_points", [])) + ".")
        specs = run.get("specs") or []
        names = run.get("dictionaries") or []
        rows = [(n, sp.get("arch"), sp.get("hook"), sp.get("hook_out") or "", sp.get("d_sae") or sp.get("expansion"),
                 sp.get("k") if "topk" in f"{sp.get('arch')} {sp.get('activation')}" else "")
                for n, sp in zip(names, specs)]
        if rows:
            s.table(["dictionary", "arch", "hook", "hook out", "latents (or expansion)", "k"], rows)
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return
    records: list[dict] = []
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    keys = [k for k in ("loss", "fvu", "l0", "dead_fraction") if any(k in r for r in records)]
    if not records or not keys:
        s.text("<code>metrics.jsonl</code> holds no readable metrics.")
        return
    fig = Figure(figsize=(10, 3.2 * math.ceil(len(keys) / 2)))
    by_dict: dict[str, list[dict]] = {}
    for r in records:
        by_dict.setdefault(str(r.get("dictionary", "")), []).append(r)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(math.ceil(len(keys) / 2), 2, i + 1)
        for name, rs in by_dict.items():
            pts = [(r["step"], r[key]) for r in rs if r.get(key) is not None and "step" in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=2, label=name)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if key == "loss":
            ax.set_yscale("log")
        if i == 0 and len(by_dict) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    s.figure(fig, "Training curves from metrics.jsonl (one line per dictionary)")
    last = {name: rs[-1] for name, rs in by_dict.items()}
    s.table(["dictionary", "last step", *keys],
            [(n, r.get("step"), *(r.get(k) for k in keys)) for n, r in last.items()])
    if bad:
        s.text(f"{bad} unreadable line(s) of metrics.jsonl were skipped.")


def _dictionary(s: Section, folder: Path, ctx: dict) -> None:
    cfg = read_json(folder / "cfg.json")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    keys = ("architecture", "model_name", "hook_name", "d_in", "d_sae", "k")
    s.table(["field", "value"], [(k, cfg.get(k, meta.get(k))) for k in keys if cfg.get(k, meta.get(k)) is not None])


def _eval(s: Section, path: Path, ctx: dict) -> None:
    from matplotlib.figure import Figure

    from ..evals.report import read_eval

    data = read_eval(path)
    dicts = data.get("dictionaries", {})
    s.text(f"Evaluated on <code>{esc(data.get('source'))}</code> with model <code>{esc(data.get('model'))}</code>. "
           "FVU: fraction of variance unexplained; CE recovered: next-token loss with the dictionary spliced in, "
           "between zero-ablation (0) and the clean model (1).")
    rows = []
    for name, d in dicts.items():
        down = d.get("downstream") or {}
        rows.append((name, d.get("arch"), d.get("d_sae"), d.get("l0"), d.get("fvu"), d.get("cosine"),
                     d.get("dead_fraction"), down.get("ce_recovered", "-"), down.get("kl", "-")))
    s.table(["dictionary", "arch", "latents", "L0", "FVU", "cosine", "dead", "CE recovered", "KL"], rows)
    hists = [(n, d["density_histogram"]) for n, d in dicts.items() if d.get("density_histogram")]
    if hists:
        fig = Figure(figsize=(5 * len(hists), 3.4))
        for i, (name, h) in enumerate(hists):
            ax = fig.add_subplot(1, len(hists), i + 1)
            edges, counts = h["bin_edges_log10"], h["counts"]
            ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge",
                   color="tab:blue", edgecolor="white")
            ax.bar([edges[0] - 1], h.get("never_fired", [0]), width=0.9, align="edge", color="tab:red",
                   label="never fired")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("log10 firing frequency")
            ax.set_ylabel("latents")
            ax.legend(fontsize=7)
        fig.tight_layout()
        s.figure(fig, "Feature density: how often each latent fires (log10), dead latents in red")
    ctx["claimed"].add(path.parent / "eval.png")


def _features(s: Section, path: Path, ctx: dict) -> None:
    from matplotlib.figure import Figure

    from ..features.db import FeatureDB

    with FeatureDB(path) as db:
        meta = db.meta
        freqs = [r[0] for r in db.con.execute("SELECT frequency FROM features")]
        cards = [db.card(f) for f, _ in db.by_density(1e-4, 0.2, limit=10)]
    live = [f for f in freqs if f and f > 0]
    hooks = ", ".join(f"<code>{esc(h)}</code>" for h in meta.get("hook_names") or [])
    s.text(f"{len(freqs)} features of the dictionary at {hooks or 'its hook point'} on "
           f"<code>{esc(meta.get('model'))}</code>, statistics over {esc(meta.get('n_tokens'))} tokens: "
           f"<b>{len(live)}</b> fired at least once, {len(freqs) - len(live)} never did.")
    index = path.parent / "dashboards" / "index.html"
    if index.is_file():
        rel = os.path.relpath(index, ctx["out_dir"])
        s.text(f"<a href='{esc(Path(rel).as_posix())}'>Open the feature dashboards</a> (one page per feature).")
    if live:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.add_subplot()
        ax.hist([math.log10(f) for f in live], bins=40, color="tab:blue")
        ax.set_xlabel("log10 activation frequency")
        ax.set_ylabel("features")
        ax.set_title("feature density")
        s.figure(fig, "How often each live feature fires (share of tokens, log10)")
    rows = []
    for c in cards:
        ex = c.top_examples[0] if c.top_examples else None
        context = "".join(ex.str_tokens or []) if ex else ""
        rows.append((c.feature, c.frequency, c.max_act, c.explanation or "", context[-70:],
                     ", ".join(repr(t.token) for t in c.promoted[:3])))
    if rows:
        s.text("The densest features between 0.01% and 20% of tokens:")
        s.table(["feature", "frequency", "max act", "explanation", "top example (end)", "promotes"], rows)


def _graph(s: Section, path: Path, ctx: dict) -> None:
    from matplotlib.figure import Figure

    g = read_json(path)
    meta, nodes, links = g.get("metadata", {}), g.get("nodes", []), g.get("links", [])
    by_type: dict[str, int] = {}
    for n in nodes:
        by_type[n.get("feature_type", "?")] = by_type.get(n.get("feature_type", "?"), 0) + 1
    s.text(f"Prompt <code>{esc(meta.get('prompt'))}</code> on <code>{esc(meta.get('scan'))}</code>: "
           f"{len(nodes)} nodes (" + ", ".join(f"{v} {esc(k)}" for k, v in sorted(by_type.items()))
           + f") and {len(links)} links after pruning (node threshold {esc(meta.get('node_threshold'))}, edge "
           f"threshold {esc(meta.get('edge_threshold'))}). Open <code>{esc(path.name)}</code> in an attribution-"
           "graph viewer (the circuit-tracer / Neuronpedia layout) to explore it.")
    logits = [n for n in nodes if n.get("feature_type") == "logit"]
    if logits:
        s.table(["output", "probability"], [(n.get("clerp", ""), n.get("token_prob", 0.0)) for n in logits])
    feats = sorted((n for n in nodes if n.get("feature_type") == "cross layer transcoder"),
                   key=lambda n: n.get("influence") if n.get("influence") is not None else 1.0)[:12]
    tokens = meta.get("prompt_tokens") or []
    if feats:
        s.text("Most influential features (smallest cumulative influence share first):")
        s.table(["node", "layer", "token", "activation", "influence"],
                [(n["node_id"], n.get("layer"), tokens[n["ctx_idx"]] if n.get("ctx_idx", -1) < len(tokens) else
                  n.get("ctx_idx"), n.get("activation"), n.get("influence")) for n in feats])
    if not nodes:
        return
    logit_layer = max((int(n["layer"]) for n in logits if str(n.get("layer", "")).isdigit()), default=None)
    top_layer = max((int(n["layer"]) for n in nodes if str(n.get("layer", "")).isdigit() and n not in logits),
                    default=0)
    logit_y = top_layer + 1

    def y(n: dict) -> float:
        if n.get("layer") == "E":
            return -1.0
        return float(logit_y if n.get("feature_type") == "logit" else n.get("layer", 0))

    cells: dict[tuple[float, float], list[str]] = {}  # nodes sharing a (position, layer) cell are spread out
    for n in nodes:
        cells.setdefault((float(n.get("ctx_idx", 0)), y(n)), []).append(n["node_id"])
    where = {}
    for (x0, y0), ids in cells.items():
        for j, nid in enumerate(ids):
            where[nid] = (x0 + (0.0 if len(ids) == 1 else 0.7 * (j / (len(ids) - 1) - 0.5)), y0)
    fig = Figure(figsize=(max(6.0, 0.6 * max(len(tokens), 1) + 2), 4.5))
    ax = fig.add_subplot()
    strongest = sorted(links, key=lambda lk: -abs(lk.get("weight", 0.0)))[:300]
    wmax = max((abs(lk.get("weight", 0.0)) for lk in strongest), default=1.0) or 1.0
    for lk in strongest:
        if lk["source"] in where and lk["target"] in where:
            (x0, y0), (x1, y1) = where[lk["source"]], where[lk["target"]]
            w = lk.get("weight", 0.0)
            ax.plot([x0, x1], [y0, y1], color="tab:blue" if w > 0 else "tab:red", alpha=0.15 + 0.6 * abs(w) / wmax,
                    linewidth=0.5 + 2 * abs(w) / wmax)
    colours = {"cross layer transcoder": "tab:green", "mlp reconstruction error": "tab:grey", "embedding": "black",
               "logit": "tab:orange"}
    for kind, colour in colours.items():
        pts = [where[n["node_id"]] for n in nodes if n.get("feature_type") == kind]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=18, color=colour, label=kind, zorder=3)
    if tokens:
        ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=60, fontsize=7)
    ax.set_yticks([-1, *range(top_layer + 1), *([logit_y] if logit_layer is not None else [])],
                  ["E", *map(str, range(top_layer + 1)), *(["logits"] if logit_layer is not None else [])],
                  fontsize=7)
    ax.set_ylabel("layer")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"attribution graph: {len(strongest)} strongest links (blue +, red -)")
    s.figure(fig, "Pruned attribution graph: nodes by prompt position and layer")
    from ..display import graph_view

    s.view(graph_view(g), "The same graph in the web UI's viewer: hover links for weights, click a node, prune")


def _acdc(s: Section, path: Path, ctx: dict) -> None:
    d = read_json(path)
    edges = d.get("edges", [])
    s.text(f"ACDC kept <b>{len(edges)}</b> of {esc(d.get('n_edges_total'))} edges; the circuit recovers "
           f"<b>{float(d.get('recovered', float('nan'))):.1%}</b> of the metric (loss: full model "
           f"{esc(fmt(d.get('loss_full')))}, circuit {esc(fmt(d.get('loss_circuit')))}, no edges "
           f"{esc(fmt(d.get('loss_empty')))}).")
    png = path.parent / "circuit.png"
    if png.is_file():
        embed(s, png, "The circuit ACDC found (circuit.png)", ctx)
    scores = d.get("scores", {})
    s.table(["sender", "receiver", "loss change when removed"],
            [(a, b, scores.get(f"{a}->{b}", "")) for a, b in edges[:40]])


def _heads(s: Section, path: Path, ctx: dict) -> None:
    import torch

    from ..display.figures import heatmap

    d = read_json(path)
    scores = d.get("scores", {})
    s.text(f"Attention-head detectors on <code>{esc(d.get('model'))}</code> ({esc(d.get('n_sequences'))} random "
           f"sequences of {esc(d.get('seq_len'))} tokens, each repeated twice). A score is the mean attention a head "
           "puts where the behaviour says it should (0 to 1).")
    s.table(["detector", "top heads"], [(k, ", ".join(f"{t['head']} ({t['score']:.2f})" for t in tops))
                                        for k, tops in d.get("top", {}).items()])
    for k, v in scores.items():
        t = torch.tensor(v, dtype=torch.float32)
        if t.ndim == 2:
            fig = heatmap(t, [f"L{i}" for i in range(t.shape[0])], [f"H{h}" for h in range(t.shape[1])],
                          title=f"{k} score", colorbar_label="score", diverging=False)
            s.figure(fig, f"{k} score per head (layers × heads)")
        ctx["claimed"].add(path.parent / f"heads_{k}.png")
    counts: dict[str, int] = {}
    for c in d.get("classes", {}).values():
        counts[c] = counts.get(c, 0) + 1
    if counts:
        by_count = sorted(counts.items(), key=lambda kv: -kv[1])
        s.table(["class", "heads"], by_count)


def _probe(s: Section, path: Path, ctx: dict) -> None:
    from ..display.figures import line_plot

    d = read_json(path)
    rows = d.get("layers", [])
    metric = d.get("metric", "accuracy")
    classes = d.get("classes")
    s.text(f"A linear probe on <code>{esc(d.get('model'))}</code> predicts <code>{esc(d.get('label_field'))}</code> "
           f"from {esc(d.get('pooling'))}-pooled activations of {esc(d.get('n_examples'))} texts"
           + (f" ({len(classes)} classes: " + ", ".join(esc(c) for c in classes[:10]) + ")" if classes else "")
           + f". Held-out {esc(metric)}; {esc(d.get('control_note', ''))}; majority baseline "
             f"{fmt(d.get('baseline'))}. Best: <b>{esc(d.get('best', {}).get('hook'))}</b>.")
    s.table(["hook", f"train {metric}", f"test {metric}", f"control {metric}", "selectivity"],
            [(r.get("hook"), r.get("train"), r.get("test"), "-" if r.get("control") is None else r["control"],
              "-" if r.get("selectivity") is None else r["selectivity"]) for r in rows])
    if rows:
        series = {"train": [r.get("train") for r in rows], "test": [r.get("test") for r in rows]}
        if all(r.get("control") is not None for r in rows):
            series["control"] = [r["control"] for r in rows]
        if d.get("baseline") and classes:
            series["majority class"] = [d["baseline"]] * len(rows)
        s.figure(line_plot(series, [r.get("label") or r.get("hook") for r in rows], title="linear probe",
                           ylabel=metric), f"Probe {metric} per hook point (test: held out; control: "
                                           f"{d.get('config', {}).get('control', '?')})")
    ctx["claimed"].add(path.parent / "probe.png")


def _command(s: Section, path: Path, ctx: dict) -> None:
    d = read_json(path)
    scalars = [(k, v) for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None]
    s.text(f"Written by <code>mechscope {esc(d['command'])}</code> (<code>{esc(path.name)}</code>).")
    s.table(["field", "value"], [(k, (v[:200] + "…") if isinstance(v, str) and len(v) > 200 else v)
                                 for k, v in scalars])
    ctx["command_folders"].append((s, path.parent))


TITLES: dict[str, str] = {"train": "Training run", "dictionary": "Dictionary", "eval": "Dictionary evaluation",
                          "features": "Features", "graph": "Attribution graph", "acdc": "ACDC circuit",
                          "heads": "Attention heads", "probe": "Linear probe"}
BUILDERS: dict[str, Callable[[Section, Path, dict], None]] = {
    "train": _train, "dictionary": _dictionary, "eval": _eval, "features": _features, "graph": _graph,
    "acdc": _acdc, "heads": _heads, "probe": _probe, "command": _command}
