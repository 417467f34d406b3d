"""Export features and attribution graphs in the layouts Neuronpedia imports (github.com/hijohnnylin/neuronpedia).

Features: :func:`export_features` writes a *source export* folder, the layout of Neuronpedia's
``utils/neuronpedia-utils`` converters, read by its ``/api/admin/import`` route::

    <out>/<model_id>/<layer>-<source_set>/
        release.jsonl   model.jsonl   sourceset.jsonl   source.jsonl         one record each
        features/batch-<i>.jsonl.gz       one ``Neuron`` row per feature
        activations/batch-<i>.jsonl.gz    one ``Activation`` row per stored example
        explanations/batch-<i>.jsonl.gz   one ``Explanation`` row per feature with an explanation

Each line is one row of the table of that name in Neuronpedia's ``apps/webapp/prisma/schema.prisma``, with only
columns of that table (the importer inserts rows as they are). Fields written, per feature (``Neuron``):

- ``modelId``, ``layer`` (the source id ``<layer>-<source_set>``), ``index`` (feature number, a string),
  ``creatorId``, ``createdAt`` (ISO 8601);
- ``maxActApprox``: the feature's max activation over the corpus pass; ``frac_nonzero``: its firing frequency;
- ``pos_str`` / ``pos_values``: tokens the decoder direction promotes most (logit effect through the unembedding),
  ``neg_str`` / ``neg_values``: the most suppressed (mechscope's ``promoted`` / ``suppressed``);
- ``freq_hist_data_bar_heights`` / ``freq_hist_data_bar_values``: the activation histogram (counts per bin, bin
  centres) over active tokens, log-spaced bins from the feature database;
- ``topkCosSimIndices`` / ``topkCosSimValues``: nearest features by decoder cosine;
- ``hasVector``, ``vector``, ``hookName``, ``vectorDefaultSteerStrength``, ``vectorLabel``: the decoder direction
  and the TransformerLens hook it writes to, when a dictionary is given (``vectors=True``), so Neuronpedia can
  steer with it; the default strength is the max activation;
- the remaining list columns (neuron alignment, correlations, logit histogram, decoder weight distribution) are
  written empty, as Neuronpedia's own converters do when they do not compute them.

Per example (``Activation``): ``id``, ``tokens`` (strings), ``values`` (the feature's activation per token),
``maxValue`` / ``maxValueTokenIndex`` / ``minValue``, ``modelId``, ``layer``, ``index``, ``creatorId``,
``createdAt``, and ``binMin`` / ``binMax`` / ``binContains`` (the activation-quantile bin an example was drawn from;
null for top examples). Per explanation (``Explanation``): ``id``, ``modelId``, ``layer``, ``index``,
``description``, ``authorId``, ``notes`` (the stored scores, e.g. the explainer model), ``scoreV2`` (detection score
when recorded), ``createdAt``; ``typeName`` and ``explanationModelName`` are null (they reference rows of the
importing instance's own tables).

Graphs: :func:`neuronpedia_graph` takes the circuit-tracer JSON of :meth:`AttributionGraph.to_json` (already the
layout of Neuronpedia's ``apps/webapp/app/api/graph/graph-schema.json``: ``metadata``, ``qParams``, ``nodes``,
``links``) and fills in what its viewer reads: ``metadata.scan`` (the Neuronpedia model id), ``metadata.info``
(creator, generator name/version/url, ``create_time_ms``), ``metadata.feature_details`` (where feature cards come
from: a ``neuronpedia_source_set`` or a ``feature_json_base_url``), ``metadata.pruning_settings``; every node keeps
``node_id``, ``feature`` (int or null), ``layer`` (string), ``ctx_idx``, ``feature_type``, ``jsNodeId`` and a
``clerp`` (label; the feature's explanation when ``db`` is given). :func:`feature_details` writes the per-feature
JSON that ``feature_json_base_url`` points at (``feature-details-schema.json``: ``index``, ``examples_quantiles``
``[{quantile_name, examples: [{tokens, tokens_acts_list}]}]``, ``top_logits``, ``bottom_logits``).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes, atomic_write_json
from .db import FeatureCard, FeatureDB
from .source import FeatureError
from .stats import Example


@dataclass
class NeuronpediaSource:
    """Where the features go on Neuronpedia: model, source set, layer, and the release they belong to."""

    model_id: str
    """Neuronpedia model id (e.g. ``gemma-2-2b``; for a model Neuronpedia does not host, your own id)."""
    source_set: str
    """Source set name without the layer, e.g. ``mechscope-res-4k``; the source id is ``<layer>-<source_set>``."""
    layer: int
    """Model layer the dictionary reads."""
    hook_name: str | None = None
    """TransformerLens hook the decoder directions write to (``blocks.6.hook_resid_post``), for steering."""
    creator_id: str = "mechscope"
    """Neuronpedia user id of the creator (the importing instance maps it; its converters default it from env)."""
    creator_name: str = "mechscope"
    release_name: str = "mechscope"
    """Release id (alphanumeric and dashes)."""
    release_title: str = "Dictionaries trained with mechscope"
    description: str = ""
    """Source set description shown by Neuronpedia (e.g. ``Residual Stream - 4k``)."""
    urls: list[str] = field(default_factory=list)
    hf_repo_id: str | None = None
    """Hub repository holding the dictionary weights, if published."""
    hf_folder_id: str | None = None
    dataset: str | None = None
    """Corpus the examples come from."""
    num_prompts: int | None = None
    num_tokens_in_prompt: int | None = None

    def __post_init__(self) -> None:
        for name in ("model_id", "source_set"):
            value = getattr(self, name)
            if not value or "/" in value or any(c.isspace() for c in value):
                raise ValueError(f"{name} must be a non-empty id without slashes or spaces, got {value!r}")
        if self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")

    @property
    def source_id(self) -> str:
        return f"{self.layer}-{self.source_set}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _f(x: Any) -> float | None:
    """A finite float rounded to 6 significant digits, None otherwise (JSON has no NaN)."""
    if x is None:
        return None
    v = float(x)
    return float(f"{v:.6g}") if math.isfinite(v) else None


def _floats(xs: Iterable[Any]) -> list[float]:
    return [v if (v := _f(x)) is not None else 0.0 for x in xs]


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]], gz: bool) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows).encode()
    atomic_write_bytes(path, gzip.compress(data, compresslevel=5) if gz else data)


def _hist(card: FeatureCard) -> tuple[list[float], list[float]]:
    """(bar heights, bar values) from the card's histogram: counts and bin centres."""
    edges = card.hist_edges
    if len(edges) != len(card.hist) + 1:
        return [], []
    centres = [(a * b) ** 0.5 if a > 0 and b > 0 else (a + b) / 2 for a, b in zip(edges, edges[1:])]
    return _floats(card.hist), _floats(centres)


def feature_row(card: FeatureCard, src: NeuronpediaSource, *, vector: Sequence[float] | None = None,
                created: str | None = None) -> dict[str, Any]:
    """One ``Neuron`` row (module docstring)."""
    heights, values = _hist(card)
    max_act = _f(card.max_act) or 0.0
    return {
        "modelId": src.model_id, "layer": src.source_id, "index": str(card.feature), "creatorId": src.creator_id,
        "createdAt": created or _now(), "maxActApprox": max_act,
        "hasVector": vector is not None, "vector": _floats(vector) if vector is not None else [],
        "vectorLabel": None, "vectorDefaultSteerStrength": max_act if vector is not None else 10,
        "hookName": src.hook_name if vector is not None else None,
        "topkCosSimIndices": [int(f) for f, _ in card.neighbours], "topkCosSimValues": _floats(c for _, c in
                                                                                               card.neighbours),
        "neuron_alignment_indices": [], "neuron_alignment_values": [], "neuron_alignment_l1": [],
        "correlated_neurons_indices": [], "correlated_neurons_pearson": [], "correlated_neurons_l1": [],
        "correlated_features_indices": [], "correlated_features_pearson": [], "correlated_features_l1": [],
        "neg_str": [t.token for t in card.suppressed], "neg_values": _floats(t.value for t in card.suppressed),
        "pos_str": [t.token for t in card.promoted], "pos_values": _floats(t.value for t in card.promoted),
        "frac_nonzero": _f(card.frequency) or 0.0,
        "freq_hist_data_bar_heights": heights, "freq_hist_data_bar_values": values,
        "logits_hist_data_bar_heights": [], "logits_hist_data_bar_values": [], "decoder_weights_dist": [],
        "sourceSetName": src.source_set,
    }


def activation_row(ex: Example, src: NeuronpediaSource, *, bin_range: tuple[float, float] | None = None,
                   created: str | None = None) -> dict[str, Any]:
    """One ``Activation`` row for a stored example."""
    values = _floats(ex.acts)
    tokens = list(ex.str_tokens) if ex.str_tokens is not None else [str(t) for t in ex.tokens]
    top = max(range(len(values)), key=values.__getitem__) if values else 0
    return {
        "id": f"ms{uuid.uuid4().hex[:23]}", "tokens": tokens, "modelId": src.model_id, "layer": src.source_id,
        "index": str(ex.feature), "maxValue": values[top] if values else 0.0, "maxValueTokenIndex": top,
        "minValue": min(values) if values else 0.0, "values": values, "creatorId": src.creator_id,
        "createdAt": created or _now(), "dataSource": None, "dataIndex": str(ex.sequence),
        "dfaValues": [], "dfaTargetIndex": None, "dfaMaxValue": None, "lossValues": [], "logitContributions": None,
        "binMin": _f(bin_range[0]) if bin_range else None, "binMax": _f(bin_range[1]) if bin_range else None,
        "binContains": None, "qualifyingTokenIndex": ex.position,
    }


def explanation_row(card: FeatureCard, src: NeuronpediaSource, created: str | None = None) -> dict[str, Any] | None:
    """One ``Explanation`` row, or None when the feature has no explanation (or only a marked placeholder)."""
    if not card.explanation or (card.scores or {}).get("placeholder"):
        return None
    scores = card.scores or {}
    detection = scores.get("detection")
    notes = "mechscope autointerp" + "".join(f"; {k}: {v}" for k, v in sorted(scores.items())
                                             if isinstance(v, (str, int, float)))
    return {"id": f"ms{uuid.uuid4().hex[:23]}", "modelId": src.model_id, "layer": src.source_id,
            "index": str(card.feature), "description": card.explanation, "authorId": src.creator_id,
            "typeName": None, "explanationModelName": None, "notes": notes,
            "scoreV2": _f(detection) if isinstance(detection, (int, float)) else None,
            "createdAt": created or _now()}


def _meta_rows(src: NeuronpediaSource, created: str, d_model: int | None) -> dict[str, dict[str, Any]]:
    return {
        "release.jsonl": {"name": src.release_name, "description": src.release_title, "descriptionShort":
                          src.release_title, "urls": src.urls, "creatorNameShort": src.creator_name,
                          "creatorName": src.creator_name, "creatorId": src.creator_id, "createdAt": created},
        "model.jsonl": {"id": src.model_id, "instruct": src.model_id.endswith("-it"), "displayNameShort":
                        src.model_id, "displayName": src.model_id, "creatorId": src.creator_id,
                        "dimension": d_model, "createdAt": created, "updatedAt": created},
        "sourceset.jsonl": {"modelId": src.model_id, "name": src.source_set, "creatorId": src.creator_id,
                            "createdAt": created, "creatorName": src.creator_name, "releaseName": src.release_name,
                            "description": src.description or src.source_set, "visibility": "PUBLIC"},
        "source.jsonl": {"id": src.source_id, "modelId": src.model_id, "setName": src.source_set,
                         "creatorId": src.creator_id, "visibility": "PUBLIC", "hasDashboards": True,
                         "dataset": src.dataset, "num_prompts": src.num_prompts,
                         "num_tokens_in_prompt": src.num_tokens_in_prompt, "hfRepoId": src.hf_repo_id,
                         "hfFolderId": src.hf_folder_id, "createdAt": created},
    }


def export_features(db: FeatureDB, out: str | os.PathLike[str], source: NeuronpediaSource, *,
                    features: Iterable[int] | None = None, dictionary: Any = None, batch_size: int = 256) -> Path:
    """Write a Neuronpedia source export of ``features`` (default: all) of ``db``; returns the source folder.

    With ``dictionary`` (the one the database was built from) each feature carries its decoder direction as a
    steering vector.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    feats = list(range(db.d_sae)) if features is None else [db.check(int(f)) for f in features]
    folder = Path(out) / source.model_id / source.source_id
    created = _now()
    w_dec = None
    if dictionary is not None:
        from .logits import decoder_directions

        w_dec = decoder_directions(dictionary).detach().float().cpu()  # (d_sae, d_model)
        if w_dec.shape[0] != db.d_sae:
            raise ValueError(f"the dictionary has {w_dec.shape[0]} features, the database {db.d_sae}")
    d_model = int(w_dec.shape[-1]) if w_dec is not None else None
    for name, row in _meta_rows(source, created, d_model).items():
        _write_jsonl(folder / name, [row], gz=False)
    for b in range(0, len(feats), batch_size):
        rows, acts, expl = [], [], []
        for f in feats[b:b + batch_size]:
            card = db.card(f)
            rows.append(feature_row(card, source, vector=w_dec[f].tolist() if w_dec is not None else None,
                                    created=created))
            acts += [activation_row(ex, source, created=created) for ex in card.top_examples]
            edges = _quantile_edges(card)
            for q, exs in enumerate(card.quantile_examples):
                acts += [activation_row(ex, source, bin_range=edges[q] if q < len(edges) else None, created=created)
                         for ex in exs]
            if (e := explanation_row(card, source, created)) is not None:
                expl.append(e)
        name = f"batch-{b // batch_size}.jsonl.gz"
        _write_jsonl(folder / "features" / name, rows, gz=True)
        _write_jsonl(folder / "activations" / name, acts, gz=True)
        if expl:
            _write_jsonl(folder / "explanations" / name, expl, gz=True)
    return folder


def _quantile_edges(card: FeatureCard) -> list[tuple[float, float]]:
    """(min, max) activation of each quantile bin's examples, as the bin's range."""
    out = []
    for exs in card.quantile_examples:
        vals = [e.activation for e in exs]
        out.append((min(vals), max(vals)) if vals else (0.0, 0.0))
    return out


# ---------------------------------------------------------------------------------------------------- graphs
def neuronpedia_graph(graph: dict[str, Any], *, scan: str, source_set: str | None = None,
                      feature_json_base_url: str | None = None, db: FeatureDB | None = None,
                      creator_name: str = "mechscope", description: str = "") -> dict[str, Any]:
    """The graph JSON (``AttributionGraph.to_json()``) with the metadata Neuronpedia's viewer reads (module
    docstring). ``db`` (the transcoders' feature database) labels feature nodes with their explanations."""
    from .. import __version__ as version

    g = json.loads(json.dumps(graph))  # a deep copy of plain data
    meta = g.setdefault("metadata", {})
    if not g.get("nodes"):
        raise ValueError("the graph has no nodes; Neuronpedia cannot show it")
    meta["scan"] = scan
    meta.setdefault("slug", "graph")
    details: dict[str, str] = {}
    if source_set:
        details["neuronpedia_source_set"] = source_set
    if feature_json_base_url:
        details["feature_json_base_url"] = feature_json_base_url.rstrip("/")
    if details:
        meta["feature_details"] = details
    meta["info"] = {"description": description, "creator_name": creator_name,
                    "generator": {"name": "mechscope", "version": version,
                                  "url": "https://pypi.org/project/mechscope/"},
                    "create_time_ms": int(datetime.now(timezone.utc).timestamp() * 1000)}
    meta["pruning_settings"] = {k: meta[k] for k in ("node_threshold", "edge_threshold") if k in meta}
    g.setdefault("qParams", {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "",
                             "sg_pos": ""})
    for n in g["nodes"]:
        n["layer"] = str(n.get("layer"))
        n.setdefault("jsNodeId", n["node_id"])
        n["feature"] = int(n["feature"]) if isinstance(n.get("feature"), (int, float)) else None
        label = n.get("clerp") or ""
        if db is not None and n.get("feature_type") in ("cross layer transcoder", "transcoder") and not label:
            card = _node_card(db, n["node_id"])
            label = (card.explanation or "") if card is not None else ""
        n["clerp"] = label
    return g


def _node_card(db: FeatureDB, node_id: str) -> FeatureCard | None:
    parts = node_id.split("_")
    try:
        return db.card(int(parts[1]))
    except (IndexError, ValueError, FeatureError):  # not a feature of this database
        return None


def feature_details(card: FeatureCard, index: int | None = None) -> dict[str, Any]:
    """The per-feature JSON a graph's ``feature_json_base_url`` serves (``<base>/<index>.json``)."""
    def ex_json(e: Example) -> dict[str, Any]:
        tokens = list(e.str_tokens) if e.str_tokens is not None else [str(t) for t in e.tokens]
        return {"tokens": tokens, "tokens_acts_list": _floats(e.acts)}

    quantiles = [{"quantile_name": "Top activations", "examples": [ex_json(e) for e in card.top_examples]}]
    n = len(card.quantile_examples)
    for q, exs in reversed(list(enumerate(card.quantile_examples))):
        if exs:
            quantiles.append({"quantile_name": f"Quantile {q + 1} of {n}", "examples": [ex_json(e) for e in exs]})
    return {"index": card.feature if index is None else index, "examples_quantiles": quantiles,
            "top_logits": [t.token for t in card.promoted], "bottom_logits": [t.token for t in card.suppressed]}


def write_graph(graph: dict[str, Any], out: str | os.PathLike[str], **kwargs: Any) -> Path:
    """:func:`neuronpedia_graph` written to ``out`` (the file to upload on Neuronpedia's graph page)."""
    data = neuronpedia_graph(graph, **kwargs)
    return atomic_write_json(out, data, allow_nan=False)


__all__ = ["NeuronpediaSource", "activation_row", "explanation_row", "export_features", "feature_details",
           "feature_row", "neuronpedia_graph", "write_graph"]
