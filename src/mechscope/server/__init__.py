"""The local web UI: a FastAPI app over run folders (``mechscope serve``).

    from mechscope.server import ServeConfig, create_app, serve
    serve(ServeConfig(runs="runs", port=8765))      # http://127.0.0.1:8765/

Modules: :mod:`.config` (options), :mod:`.runs` (registered run folders, safe paths), :mod:`.worker` (the model
thread), :mod:`.featurestore` (feature database adapter), :mod:`.analysis` (steering, lens, patching jobs),
:mod:`.routes_runs` / :mod:`.routes_features` / :mod:`.routes_model` (endpoints), :mod:`.app` (assembly).
"""

from __future__ import annotations

import logging

from .config import ServeConfig

log = logging.getLogger(__name__)


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003
    """See :func:`mechscope.server.app.create_app` (imported lazily: fastapi is an optional dependency)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)


def serve(config: ServeConfig) -> None:
    """Run the server in the foreground until interrupted."""
    import uvicorn

    app = create_app(config)
    log.info("serving %s on %s", config.runs, config.url())
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", server_header=False)


__all__ = ["ServeConfig", "create_app", "serve"]
