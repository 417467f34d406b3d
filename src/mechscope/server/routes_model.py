"""Endpoints that run the model (queued on the model worker thread): steering, logit lens, patching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from .analysis import lens_job, patch_job, steer_job
from .routes_runs import ctx, model_info
from .runs import RunError
from .schemas import ErrorBody, Heatmap, LensRequest, ModelInfo, PatchRequest, SteerRequest, SteerResponse

router = APIRouter(prefix="/api", tags=["model"],
                   responses={404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody},
                              503: {"model": ErrorBody}})


@router.get("/model", response_model=ModelInfo, summary="The model the server uses and whether it is loaded")
def model(request: Request) -> ModelInfo:
    return model_info(ctx(request))


@router.post("/steer", response_model=SteerResponse, summary="Generate with and without a feature added")
async def steer(request: Request, body: SteerRequest) -> dict:
    c = ctx(request)
    folder = c.registry.resolve(body.run, body.dictionary, kind="dir")
    if not (folder / "cfg.json").is_file():
        raise RunError(f"{body.dictionary!r} in run {body.run!r} is not a dictionary folder (no cfg.json)")
    return await c.worker.run(steer_job(body, folder, _db_for(c, body.run, body.dictionary, folder),
                                        c.config.max_prompt_tokens))


def _db_for(c: Any, run: str, dictionary: str, folder: Path) -> Path | None:
    """The run's feature database for this dictionary: one inside its folder, else the only one in the run."""
    dbs = c.registry.describe(run).feature_dbs
    inside = [p for p in dbs if dictionary in (".", "") or p.startswith(dictionary.rstrip("/") + "/")]
    pick = inside[0] if inside else (dbs[0] if len(dbs) == 1 else None)
    return c.registry.resolve(run, pick) if pick else None


@router.post("/lens", response_model=Heatmap, summary="Logit lens of a prompt (layers × positions)")
async def lens(request: Request, body: LensRequest) -> dict:
    c = ctx(request)
    return await c.worker.run(lens_job(body, c.config.max_prompt_tokens))


@router.post("/patch", response_model=Heatmap, summary="Activation patching heatmap (layers × positions)")
async def patch(request: Request, body: PatchRequest) -> dict:
    c = ctx(request)
    return await c.worker.run(patch_job(body, c.config.max_prompt_tokens))
