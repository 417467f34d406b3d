"""A long model request does not block feature cards or static files; a full queue answers 503.

The model loader blocks on an event, so the first model request occupies the worker thread for as long as the test
wants: no timing assumptions. The server is a real uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from .conftest import LiveServer  # noqa: E402
from mechscope.server import ServeConfig, create_app  # noqa: E402

pytestmark = pytest.mark.real


def test_long_request_does_not_block_others(runs_root, smollm):
    release = threading.Event()

    def slow_load():
        release.wait()
        return smollm

    srv = LiveServer(create_app(ServeConfig(runs=str(runs_root), port=0, max_queue=1), load_model=slow_load))
    results: dict = {}
    try:
        with httpx.Client(base_url=srv.url, timeout=None) as c:
            def post(key):
                results[key] = c.post("/api/lens", json={"prompt": "The cat sat"})

            first = threading.Thread(target=post, args=("first",))
            first.start()
            while not c.get("/api/model").json()["busy"]:  # the worker has picked the job up
                first.join(0.02)
            second = threading.Thread(target=post, args=("second",))
            second.start()  # waits in the queue (max_queue=1)
            while srv.app_ctx().worker.pending < 2:
                second.join(0.02)
            third = c.post("/api/lens", json={"prompt": "The dog"})
            assert third.status_code == 503 and "busy" in third.json()["error"]

            # While the model thread is stuck, cards, searches, listings and static files are answered.
            for _ in range(5):
                r = c.get("/api/runs/demo/features/1")
                assert r.status_code == 200 and r.json()["feature"] == 1
            assert c.get("/api/runs/demo/features", params={"q": "capital"}).status_code == 200
            assert c.get("/static/app.js").status_code == 200
            assert c.get("/api/runs").status_code == 200
            assert first.is_alive() and not release.is_set()

            release.set()
            first.join()
            second.join()
            assert results["first"].status_code == 200 and results["second"].status_code == 200
            assert c.get("/api/model").json()["jobs_done"] == 2
    finally:
        release.set()
        srv.stop()
