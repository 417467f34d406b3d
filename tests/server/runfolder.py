"""Build a small, real run folder for the server tests and the load benchmark (nothing committed in binary form).

- ``sae/``: a TopK dictionary (``ms.dictionaries.create``) at ``blocks.6.resid_post`` of the built-in model;
- ``sae/features.db``: statistics over a few sentences and the feature database of :mod:`mechscope.features`;
- ``sae/dashboards/feature_N.html``: dashboards (when the features module can write them; a minimal page if not);
- ``graph.json``: a small hand-written attribution graph in the JSON layout documented in
  :mod:`mechscope.circuits.graph` (circuit-tracer's), with feature nodes at the dictionary's layer;
- ``eval.json``, ``metrics.jsonl``, ``report.html``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)
HOOK = "blocks.6.resid_post"
LAYER = 6
D_SAE = 64
CORPUS = [
    "The cat sat on the mat and looked at the dog.",
    "def add(a, b):\n    return a + b  # add two numbers",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "import os\nimport sys\nprint(os.getcwd())",
    "The quick brown fox jumps over the lazy dog again and again.",
]


def build_run(folder: Path, model) -> Path:
    """Write the run folder (idempotent enough for a session fixture) and return it."""
    import mechscope as ms

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sae = ms.dictionaries.create("topk", d_in=model.cfg.d_model, d_sae=D_SAE, k=8, hook_name=HOOK,
                                 model_name="smollm2-135m")
    sae_dir = folder / "sae"
    sae.save(sae_dir)
    sae = ms.dictionaries.load(sae_dir, model=model)
    live = _feature_db(sae_dir, model, sae)
    (folder / "graph.json").write_text(json.dumps(hand_graph(model, features=live[:2])))
    (folder / "eval.json").write_text(json.dumps({"mse": 0.12, "explained_variance": 0.81, "l0": 8.0}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n"
                                                  for s in range(5)))
    (folder / "report.html").write_text("<!doctype html><title>report</title><h1>Fixture report</h1>")
    return folder


def _feature_db(sae_dir: Path, model, sae) -> list[int]:
    """Statistics, database and dashboards; returns the features by decreasing frequency."""
    from mechscope.features import StatsConfig, build_database, feature_stats

    stats = feature_stats(model, sae, CORPUS, StatsConfig(top_k=4, reservoir=4, n_quantiles=2), batch_size=6,
                          max_length=32)
    build_database(sae_dir / "features.db", stats, model, sae, k_logits=5, k_neighbours=3)
    dash = sae_dir / "dashboards"
    try:
        from mechscope.features import dashboards  # type: ignore[attr-defined]
        write = getattr(dashboards, "write_dashboards", None)
    except ImportError:
        write = None
    if write is not None:
        write(sae_dir / "features.db", dash)  # every active feature
    if not dash.is_dir() or not any(dash.glob("*.html")):
        dash.mkdir(exist_ok=True)
        for f in range(D_SAE):
            (dash / f"feature_{f}.html").write_text(
                f"<!doctype html><meta charset=utf-8><title>feature {f}</title>"
                f"<body style='font-family:sans-serif'><h2>Feature {f} dashboard</h2><p>fixture page</p></body>")
    return [int(f) for f in stats.frequency.argsort(descending=True)]


def hand_graph(model, features: list[int] = (2, 5), layer: int = LAYER) -> dict:
    """A minimal graph in the documented layout: 2 tokens -> 2 features (layer ``layer``) + 1 error -> 1 logit."""
    a, b = features
    toks = model.to_str_tokens("The cat")
    n = model.cfg.n_layers
    nodes = [
        {"node_id": f"E_0_{p}", "jsNodeId": f"E_0-{p}", "feature": p, "layer": "E", "ctx_idx": p,
         "feature_type": "embedding", "clerp": t, "influence": 1.0} for p, t in enumerate(toks)]
    nodes += [
        {"node_id": f"{layer}_{i}_1", "jsNodeId": f"{layer}_{i}-0", "feature": i, "layer": str(layer), "ctx_idx": 1,
         "feature_type": "cross layer transcoder", "clerp": f"feature {i}", "activation": 1.5, "influence": 0.5}
        for i in (a, b)]
    nodes += [{"node_id": f"{layer}_-1_1", "jsNodeId": f"{layer}_-1-1", "feature": -1, "layer": str(layer),
               "ctx_idx": 1, "feature_type": "mlp reconstruction error", "clerp": "error", "influence": 0.2},
              {"node_id": f"{n + 1}_100_1", "jsNodeId": "L_100-1", "feature": 100, "layer": str(n + 1), "ctx_idx": 1,
               "feature_type": "logit", "token_prob": 0.4, "is_target_logit": True, "clerp": 'Output " sat"'}]
    links = [{"source": "E_0_0", "target": f"{layer}_{a}_1", "weight": 0.8},
             {"source": "E_0_1", "target": f"{layer}_{b}_1", "weight": -0.4},
             {"source": "E_0_1", "target": f"{layer}_{a}_1", "weight": 0.1},
             {"source": f"{layer}_{a}_1", "target": f"{n + 1}_100_1", "weight": 1.2},
             {"source": f"{layer}_{b}_1", "target": f"{n + 1}_100_1", "weight": 0.05},
             {"source": f"{layer}_-1_1", "target": f"{n + 1}_100_1", "weight": 0.3}]
    return {"metadata": {"slug": "fixture", "scan": "smollm2-135m", "prompt_tokens": toks, "prompt": "The cat",
                         "schema_version": 1}, "qParams": {}, "nodes": nodes, "links": links}
