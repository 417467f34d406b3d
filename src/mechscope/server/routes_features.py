"""Feature search, feature cards and attribution graphs, read from the files of a run."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from . import featurestore
from .config import MAX_QUERY_CHARS
from .routes_runs import RUN, ctx
from .runs import RunError, read_json
from .schemas import ErrorBody, FeatureCard, FeatureSearch, Graph, GraphLink, GraphNode

router = APIRouter(prefix="/api/runs/{run}", tags=["features and graphs"],
                   responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
DB = Query(None, max_length=512, description="feature database path in the run (default: the first found)")
MAX_GRAPH_NODES = 5000
MAX_GRAPH_LINKS = 50000
FEATURE_NODE = re.compile(r"^(\d+)_(\d+)_(\d+)$")  # "{layer}_{index}_{pos}"


def _db(request: Request, run: str, db: str | None) -> tuple[str, Any, Any]:
    reg = ctx(request).registry
    info = reg.describe(run)
    if db is None:
        if not info.feature_dbs:
            raise RunError(f"run {run!r} has no feature database (features.db)")
        db = info.feature_dbs[0]
    return db, featurestore.open_db(reg.resolve(run, db)), info


@router.get("/features", response_model=FeatureSearch, summary="Search the features of a run")
def search_features(request: Request, run: str = RUN,
                    q: str = Query("", max_length=MAX_QUERY_CHARS,
                                   description="a feature number, token:WORD, or words to find in top examples "
                                               "and explanations; empty lists the most frequent features"),
                    limit: int = Query(20, ge=1, le=200), db: str | None = DB) -> FeatureSearch:
    rel, store, _ = _db(request, run, db)
    hits, _how = featurestore.search(store, q, limit)
    return FeatureSearch(run=run, db=rel, query=q, total=store.d_sae, hits=hits)


@router.get("/features/{feature}", response_model=FeatureCard, summary="A feature's card")
def feature_card(request: Request, feature: int = PathParam(ge=0, le=2**31), run: str = RUN,
                 db: str | None = DB) -> FeatureCard:
    rel, store, info = _db(request, run, db)
    card = featurestore.card(store, feature)
    status = (card.get("scores") or {}).get("status")
    label = card.get("explanation") or (f"(no usable explanation: {status})" if status and status != "ok" else "")
    return FeatureCard(run=run, db=rel, feature=feature, label=label,
                       dashboard=featurestore.dashboard_for(info, rel, feature), card=card)


@router.get("/graphs/{path:path}", response_model=Graph, summary="An attribution graph (circuit-tracer JSON)")
def graph(request: Request, path: str, run: str = RUN) -> Graph:
    data = read_json(ctx(request).registry.resolve(run, path))
    if not isinstance(data, dict) or not all(k in data for k in ("metadata", "nodes", "links")):
        raise RunError(f"{path!r} is not an attribution graph: expected an object with metadata, nodes, links", 422)
    nodes, links = data["nodes"], data["links"]
    if not isinstance(nodes, list) or not isinstance(links, list):
        raise RunError(f"{path!r}: nodes and links must be lists", 422)
    if len(nodes) > MAX_GRAPH_NODES or len(links) > MAX_GRAPH_LINKS:
        raise RunError(f"{path!r} has {len(nodes)} nodes and {len(links)} links; the viewer shows at most "
                       f"{MAX_GRAPH_NODES} and {MAX_GRAPH_LINKS} (prune it further)", 413)
    try:
        parsed_nodes = [GraphNode(**{k: v for k, v in n.items() if k in GraphNode.model_fields})
                        for n in nodes]
        parsed_links = [GraphLink(source=lk["source"], target=lk["target"], weight=lk["weight"]) for lk in links]
    except (TypeError, KeyError, ValueError) as e:
        raise RunError(f"{path!r} does not follow the graph format: {e}", 422) from None
    ids = {n.node_id for n in parsed_nodes}
    dangling = [lk for lk in parsed_links if lk.source not in ids or lk.target not in ids]
    if dangling:
        raise RunError(f"{path!r}: {len(dangling)} links name unknown nodes, e.g. {dangling[0].source} -> "
                       f"{dangling[0].target}", 422)
    meta = data["metadata"] if isinstance(data["metadata"], dict) else {}
    return Graph(run=run, path=path, metadata=featurestore.clean(meta), nodes=parsed_nodes, links=parsed_links)


@router.get("/node-card", summary="The feature card behind an attribution-graph node")
def node_card(request: Request, run: str = RUN,
              node_id: str = Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")) -> dict:
    """For feature nodes (``"{layer}_{index}_{pos}"``), the card from the run's feature database whose hook point
    is at that layer; other nodes (tokens, errors, logits) have no card."""
    m = FEATURE_NODE.match(node_id)
    if not m or node_id.split("_")[1] == "-1":
        return {"node_id": node_id, "card": None, "message": "not a feature node (token, error or logit)"}
    layer, index = int(m.group(1)), int(m.group(2))
    reg = ctx(request).registry
    info = reg.describe(run)
    rel = featurestore.db_for_layer(reg, run, info, layer)
    if rel is None:
        return {"node_id": node_id, "card": None, "layer": layer, "feature": index,
                "message": f"run {run!r} has no feature database for layer {layer}"}
    store = featurestore.open_db(reg.resolve(run, rel))
    card = featurestore.card(store, index)
    return {"node_id": node_id, "layer": layer, "feature": index, "db": rel, "card": card,
            "dashboard": featurestore.dashboard_for(info, rel, index), "message": ""}
