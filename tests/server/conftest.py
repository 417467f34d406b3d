"""Fixtures for the server tests: a real run folder, an app over it, and a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from .runfolder import build_run


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium (skipped when chromium/playwright "
                                       "are missing; scripts/install_browser.sh installs them)")


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, smollm) -> Path:
    """``runs/demo`` (dictionary, features.db, dashboards, graph, eval, metrics, report) plus ``runs/evil``."""
    root = tmp_path_factory.mktemp("runs")
    build_run(root / "demo", smollm)
    evil = root / "evil"
    evil.mkdir()
    secret = tmp_path_factory.mktemp("outside") / "secret.json"
    secret.write_text('{"secret": true}')
    (evil / "escape.json").symlink_to(secret)                # a symlink leaving its run folder
    (evil / "up").symlink_to(root / "demo", target_is_directory=True)
    (evil / ".hidden.json").write_text("{}")
    (evil / "graph.json").write_text('{"metadata": {}, "nodes": [{"node_id": "a"}], "links": 3}')
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; ``stop()`` ends it."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            self.thread.join(0.05)

    def app_ctx(self):
        """The app's shared context (config, run registry, model worker)."""
        return self.app.state.ctx

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture(scope="session")
def live_server(runs_root, smollm):
    """A real server over ``runs_root`` sharing the session's model (no second load)."""
    pytest.importorskip("uvicorn")
    from mechscope.server import ServeConfig, create_app

    srv = LiveServer(create_app(ServeConfig(runs=str(runs_root), port=0), load_model=lambda: smollm))
    yield srv
    srv.stop()
