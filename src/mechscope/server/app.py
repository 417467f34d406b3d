"""The FastAPI application: middleware (token, body limit, security headers), error handlers, static pages, routers.

Errors: every failure is JSON ``{"error": message}``. Bad data (a damaged file in a run, arguments a library
function refuses) answers 4xx: mechscope's own exceptions and ``ValueError`` map to 422 (a file in a run that
cannot be read: 409), and are logged with their traceback at warning level; only an unexpected exception (a bug)
answers 500, logged as an error.

Token: when the config has a token (always for a non-loopback host), every ``/api/`` request must carry it, as
``Authorization: Bearer TOKEN``, ``X-Mechscope-Token: TOKEN``, ``?token=TOKEN`` or the ``mechscope_token`` cookie
that the page sets when it is opened with ``?token=`` (so that dashboards in frames and file links work); otherwise
401. The page itself and static files carry no data and need no token.

``/openapi.json`` is the documented contract of the JSON API. FastAPI's own ``/docs`` page loads Swagger UI from a
CDN, which cannot work offline, so it is switched off and ``/docs`` serves a small local page that renders
``/openapi.json`` (endpoints, parameters, request and response schemas) with no external resource.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .analysis import TooLarge
from .config import ServeConfig
from .runs import RunError, RunRegistry
from .worker import ModelWorker, WorkerBusy

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
CSP_APP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")


class ServerContext:
    """What the routes share: the config, the run registry and the model worker."""

    def __init__(self, config: ServeConfig, load_model: Callable[[], Any] | None = None):
        self.config = config
        self.registry = RunRegistry(config.runs)
        if load_model is None:
            def load_model() -> Any:
                from .. import load_model as _load
                return _load(config.model)
        self.worker = ModelWorker(load_model, max_queue=config.max_queue)


TOKEN_HEADER = "x-mechscope-token"
TOKEN_COOKIE = "mechscope_token"


def request_token(request: Request) -> str | None:
    """The token a request carries (header, bearer, cookie or query), if any."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return (request.headers.get(TOKEN_HEADER) or request.query_params.get("token")
            or request.cookies.get(TOKEN_COOKIE))


def token_ok(request: Request, token: str) -> bool:
    given = request_token(request)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _library_status(exc: Exception) -> int | None:
    """The 4xx status of an exception that reports bad input or bad data; None for an unexpected one (a bug)."""
    from ..features.db import FeatureDBError
    from ..training.checkpoint import CheckpointError

    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status
    if isinstance(exc, (FeatureDBError, CheckpointError)):
        return 409
    from ..dictionaries.errors import DictionaryFormatError, DictionaryNotFoundError

    if isinstance(exc, DictionaryFormatError):
        return 409
    if isinstance(exc, DictionaryNotFoundError):
        return 404
    if isinstance(exc, RecursionError):  # input nested deeper than Python recurses
        return 422
    if isinstance(exc, ValueError) or type(exc).__module__.startswith("mechscope."):
        return 422
    return None


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``limit`` bytes, by Content-Length or while streaming."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = JSONResponse({"error": f"request body larger than {self.limit} bytes"}, status_code=413)
        try:
            if declared is not None and int(declared) > self.limit:
                return await too_big(scope, receive, send)
        except ValueError:
            return await JSONResponse({"error": "invalid Content-Length header"}, 400)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return msg

        started = False

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _BodyTooLarge:
            if not started:
                await too_big(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        if e.get("type") == "json_invalid":
            return f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}"
        parts.append(f"{where}: {e.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def create_app(config: ServeConfig, *, load_model: Callable[[], Any] | None = None) -> FastAPI:
    """The web UI and JSON API over ``config.runs``. ``load_model`` overrides how the model is loaded (tests)."""
    from . import routes_features, routes_model, routes_runs, trace

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.ctx.worker.shutdown()

    app = FastAPI(title="mechscope", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Local web UI and JSON API over mechscope run folders. Errors are JSON "
                              "`{\"error\": message}` with a 4xx/5xx status.")
    app.state.ctx = ServerContext(config, load_model)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable) -> Any:
        token = config.token
        if token and request.url.path.startswith("/api/") and not token_ok(request, token):
            given = request_token(request) is not None
            response: Any = JSONResponse(
                {"error": ("invalid API token" if given else "this server requires an API token") + ": open the "
                          "address `mechscope serve` printed (with ?token=...) or send the header "
                          "'Authorization: Bearer TOKEN'"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        if token and request.url.path == "/" and request.query_params.get("token") is not None \
                and token_ok(request, token):  # frames and file links then carry it too
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", CSP_APP)
        return response

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"error": _validation_message(exc.errors()), "details": errors}, status_code=422)

    @app.exception_handler(RunError)
    async def run_error(request: Request, exc: RunError) -> JSONResponse:
        return JSONResponse({"error": str(exc.args[0])}, status_code=exc.status)

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=413)

    @app.exception_handler(WorkerBusy)
    async def busy(request: Request, exc: WorkerBusy) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no such endpoint or page: {request.url.path}"
        return JSONResponse({"error": msg}, status_code=exc.status_code)

    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        status = _library_status(exc)
        if status is None:
            return await crashed(request, exc)
        # bad input or a damaged file: the caller's problem, said plainly (traceback in the log, not the answer)
        log.warning("%s %s: %s: %s", request.method, request.url.path, exc.__class__.__name__, exc, exc_info=exc)
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, RecursionError):
            msg = "the input is nested too deeply to read"
        return JSONResponse({"error": msg or exc.__class__.__name__}, status_code=status)

    from ..dictionaries.errors import DictionaryError
    from ..models.hook_points import HookNameError

    for cls in (ValueError, RecursionError, DictionaryError, HookNameError):
        app.add_exception_handler(cls, library_error)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error: {exc.__class__.__name__}: {exc}"}, status_code=500)

    app.include_router(routes_runs.router)
    app.include_router(routes_features.router)
    app.include_router(routes_model.router)
    app.include_router(trace.router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> RedirectResponse:
        return RedirectResponse("/docs")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app
