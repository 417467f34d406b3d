"""Run browser endpoints: server info, the runs served, what each holds, and its files (read-only, checked)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from .. import __version__
from . import featurestore
from .config import MAX_NEW_TOKENS, MAX_PATCH_TOKENS, MAX_PROMPT_CHARS, MAX_QUERY_CHARS
from .runs import RunError, parse_json, read_json
from .schemas import ErrorBody, ModelInfo, RunDetail, RunSummary, ServerInfo

router = APIRouter(prefix="/api", tags=["runs"], responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}})
RUN = PathParam(max_length=128, description="run name (a folder under --runs)")
# Files served from run folders, by extension; anything else (weights, databases) is refused.
SERVED_TYPES = {".html": "text/html", ".json": "application/json", ".jsonl": "application/x-ndjson",
                ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain", ".csv": "text/csv",
                ".md": "text/markdown", ".log": "text/plain"}
# Run HTML (reports, dashboards) is shown sandboxed: its scripts run, but it cannot reach the API or the page.
CSP_RUN_FILE = ("sandbox allow-scripts allow-popups; default-src 'none'; img-src data: 'self'; "
                "style-src 'unsafe-inline' 'self'; script-src 'unsafe-inline'; font-src data:; connect-src 'none'")


def ctx(request: Request) -> Any:
    return request.app.state.ctx


def model_info(c: Any) -> ModelInfo:
    w = c.worker
    cfg = getattr(w._model, "cfg", None) if w.loaded else None
    return ModelInfo(name=c.config.model, loaded=w.loaded, busy=w.busy_since is not None, queued=w.pending,
                     error=w.model_error,
                     n_layers=getattr(cfg, "n_layers", None), d_model=getattr(cfg, "d_model", None),
                     jobs_done=w.jobs_done)


@router.get("/info", response_model=ServerInfo, summary="Server version, limits and backends")
def info(request: Request) -> ServerInfo:
    c = ctx(request)
    limits = {"max_body_bytes": c.config.max_body_bytes, "max_prompt_chars": MAX_PROMPT_CHARS,
              "max_prompt_tokens": c.config.max_prompt_tokens, "max_new_tokens": MAX_NEW_TOKENS,
              "max_patch_tokens": MAX_PATCH_TOKENS, "max_query_chars": MAX_QUERY_CHARS,
              "max_queue": c.config.max_queue}
    try:
        from ..circuits import graph as _graph  # noqa: F401
        graphs = "mechscope.circuits.graph (circuit-tracer JSON)"
    except ImportError:
        graphs = "circuit-tracer JSON (metadata, nodes, links)"
    return ServerInfo(version=__version__, runs_root=str(c.registry.root), model=model_info(c), limits=limits,
                      features_backend=featurestore.backend(), graphs_backend=graphs)


@router.get("/runs", response_model=list[RunSummary], summary="The run folders served")
def runs(request: Request) -> list[RunSummary]:
    reg = ctx(request).registry
    return [RunSummary(name=n, summary=reg.describe(n).summary) for n in reg.names()]


@router.get("/runs/{run}", response_model=RunDetail, summary="What one run folder holds")
def run_detail(request: Request, run: str = RUN) -> RunDetail:
    reg = ctx(request).registry
    info_ = reg.describe(run)
    eval_data = last = None
    if info_.evals:
        try:
            data = read_json(reg.resolve(run, info_.evals[0]))
            eval_data = data if isinstance(data, dict) and len(json.dumps(data)) < 20000 else None
        except (ValueError, OSError, RunError):
            eval_data = None
    if info_.metrics:
        last = _last_json_line(reg.resolve(run, info_.metrics[0]))
    return RunDetail(name=run, summary=info_.summary, dictionaries=info_.dictionaries,
                     feature_dbs=info_.feature_dbs, dashboards=info_.dashboards, graphs=info_.graphs,
                     reports=info_.reports, evals=info_.evals, metrics=info_.metrics,
                     eval=featurestore.clean(eval_data), last_metrics=featurestore.clean(last))


@router.get("/runs/{run}/files/{path:path}", summary="A file of a run (HTML, JSON, images, text only)",
            response_class=FileResponse)
def run_file(request: Request, path: str, run: str = RUN) -> FileResponse:
    target = ctx(request).registry.resolve(run, path)
    media = SERVED_TYPES.get(target.suffix.lower())
    if media is None:
        raise RunError(f"files of type {target.suffix or '(none)'!r} are not served; served types: "
                       f"{', '.join(sorted(SERVED_TYPES))}", 415)
    headers = {"Content-Security-Policy": CSP_RUN_FILE, "Cache-Control": "no-cache"}
    return FileResponse(target, media_type=media if not media.startswith("text/") else media + "; charset=utf-8",
                        headers=headers)


def _last_json_line(path: Any, tail: int = 65536) -> dict | None:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - tail))
        lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        try:
            obj = parse_json(ln, "metrics line")
        except RunError:
            continue
        return obj if isinstance(obj, dict) else None
    return None
