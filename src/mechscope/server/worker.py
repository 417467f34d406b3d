"""One worker thread owns the model: model requests queue for it, everything else stays on the event loop.

The model (and the dictionaries loaded for steering) are touched only from the worker thread, so no request can
see a half-loaded model or race another forward pass. Feature cards, run listings and static files never wait for
it. A bounded number of jobs may wait (``max_queue``); beyond that :class:`WorkerBusy` is raised (503).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerBusy(RuntimeError):
    """Too many model requests are waiting already."""


class ModelWorker:
    """Runs ``job(state)`` calls one at a time on a dedicated thread; ``state`` holds the loaded model."""

    def __init__(self, load_model: Callable[[], Any], max_queue: int = 8, max_dictionaries: int = 4):
        self._load_model = load_model
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mechscope-model")
        self._slots = threading.BoundedSemaphore(max_queue + 1)  # + the running job
        self._model: Any = None
        self.dictionaries: OrderedDict[str, Any] = OrderedDict()
        self.max_dictionaries = max_dictionaries
        self.model_error: str | None = None
        self.busy_since: float | None = None
        self.jobs_done = 0
        self.pending = 0  # jobs queued or running
        self._count_lock = threading.Lock()

    # -- called on the worker thread ----------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The model, loaded on first use (only call from inside a job)."""
        if self._model is None:
            t0 = time.perf_counter()
            try:
                self._model = self._load_model()
            except Exception as e:
                self.model_error = f"{e.__class__.__name__}: {e}"
                raise
            self.model_error = None
            log.info("model loaded in %.1f s", time.perf_counter() - t0)
        return self._model

    def dictionary(self, key: str, load: Callable[[], Any]) -> Any:
        """A dictionary from the small LRU cache, loaded with ``load()`` on a miss (only call from a job)."""
        if key in self.dictionaries:
            self.dictionaries.move_to_end(key)
            return self.dictionaries[key]
        d = load()
        self.dictionaries[key] = d
        while len(self.dictionaries) > self.max_dictionaries:
            self.dictionaries.popitem(last=False)
        return d

    # -- called from the event loop -----------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _wrap(self, job: Callable[[ModelWorker], T]) -> Callable[[], T]:
        def run() -> T:
            self.busy_since = time.time()
            try:
                return job(self)
            finally:
                self.busy_since = None
                with self._count_lock:
                    self.jobs_done += 1
                    self.pending -= 1
                self._slots.release()
        return run

    async def run(self, job: Callable[[ModelWorker], T]) -> T:
        """Queue ``job`` and await its result without blocking the event loop."""
        if not self._slots.acquire(blocking=False):
            raise WorkerBusy("the model is busy with other requests; try again in a moment")
        with self._count_lock:
            self.pending += 1
        try:
            fut = self._pool.submit(self._wrap(job))
        except Exception:
            with self._count_lock:
                self.pending -= 1
            self._slots.release()
            raise
        return await asyncio.wrap_future(fut)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
