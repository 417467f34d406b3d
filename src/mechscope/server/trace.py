"""Attribution graphs on demand through the model's cached transcoder set (``mechscope dictionaries build``).

``GET /api/transcoder-set`` says whether the set is there (and its evaluation); ``POST /api/attribute`` builds the
graph of a prompt through it on the model worker and answers the viewer's JSON (``metadata`` carries the
replacement and completeness scores). Without a set, attribution answers 404 naming the command that builds it;
a corrupt or foreign set answers 409 naming the file.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from .analysis import Job, _check_tokens
from .config import MAX_PROMPT_CHARS
from .routes_runs import ctx
from .runs import RunError
from .schemas import ErrorBody, Strict

router = APIRouter(prefix="/api", tags=["trace"],
                   responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 413: {"model": ErrorBody},
                              422: {"model": ErrorBody}})

SET_KEY = "transcoder-set"


class AttributeRequest(Strict):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    target: str | None = Field(None, description="target token (one token); default: the top predictions")
    max_feature_nodes: int = Field(512, ge=16, le=4096)


def _find(model: Any) -> Any:
    from ..sets import TranscoderSetError, find_transcoder_set

    try:
        found = find_transcoder_set(model, verify=False)
    except TranscoderSetError as e:
        raise RunError(str(e), 409) from None
    if found is None:
        raise RunError(f"no transcoder set is cached for {model.cfg.name}: build it with `mechscope dictionaries "
                       "build` (or `make dictionaries`)", 404)
    return found


def set_info_job() -> Job:
    def job(worker: Any) -> dict:
        found = _find(worker.model)
        return {"folder": str(found.folder.name), "model": found.model, "n_layers": found.n_layers,
                "settings": found.manifest.get("settings", {}), "replacement": found.manifest.get("replacement", {})}
    return job


def attribute_job(req: AttributeRequest, max_tokens: int) -> Job:
    def job(worker: Any) -> dict:
        from ..circuits import AttributionConfig, attribute, feature_supernodes

        model = worker.model
        _check_tokens(model, req.prompt, max_tokens)
        found = _find(model)
        tcs = worker.dictionary(SET_KEY, found.transcoders)
        targets = [model.to_single_token(req.target)] if req.target else None
        graph = attribute(model, tcs, req.prompt, target_tokens=targets,
                          cfg=AttributionConfig(max_feature_nodes=req.max_feature_nodes))
        pr = graph.prune()
        return graph.to_json(slug="live", prompt=req.prompt, scan=model.cfg.name,
                             supernodes=feature_supernodes(graph, pr.node_mask))
    return job


@router.get("/transcoder-set", summary="The model's cached transcoder set (404 when none is built)")
async def transcoder_set(request: Request) -> dict:
    c = ctx(request)
    return await c.worker.run(set_info_job())


@router.post("/attribute", summary="Attribution graph of a prompt through the cached set")
async def attribute_prompt(request: Request, body: AttributeRequest) -> dict:
    c = ctx(request)
    return await c.worker.run(attribute_job(body, c.config.max_prompt_tokens))
