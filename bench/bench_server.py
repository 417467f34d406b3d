"""Load test of the web UI on loopback: concurrent feature-card requests against a real uvicorn server.

Builds a small real run folder (the built-in model, a TopK dictionary at blocks.6.resid_post, its feature
database), starts ``mechscope serve``'s app on 127.0.0.1 on a free port, fires ``--requests`` GETs of
``/api/runs/demo/features/{i}`` from ``--concurrency`` httpx async clients, and reports latency percentiles and
throughput. Optionally (``--with-generation``) a steering request keeps the model thread busy during the run, to
show that cards do not wait for it. Stops by itself.

    .venv/bin/python bench/bench_server.py --requests 200 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_server")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def fire(url: str, n: int, concurrency: int, d_sae: int) -> tuple[list[float], int]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as c:
        async def one(i: int) -> None:
            nonlocal errors
            async with sem:
                t0 = time.perf_counter()
                r = await c.get(f"/api/runs/demo/features/{i % d_sae}")
                lat.append(time.perf_counter() - t0)
                errors += r.status_code != 200
        await asyncio.gather(*(one(i) for i in range(n)))
    return lat, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--with-generation", action="store_true", help="keep the model thread busy meanwhile")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    import httpx
    import torch

    import mechscope as ms
    from tests.server.conftest import LiveServer
    from mechscope.server import ServeConfig, create_app
    from tests.server.runfolder import D_SAE, build_run

    torch.set_num_threads(2)
    model = ms.load_model("smollm2-135m")
    with tempfile.TemporaryDirectory() as tmp:
        build_run(Path(tmp) / "demo", model)
        srv = LiveServer(create_app(ServeConfig(runs=tmp, port=0), load_model=lambda: model))
        try:
            httpx.get(srv.url + "/api/runs/demo/features/0")  # warm up
            gen = None
            if args.with_generation:
                body = {"run": "demo", "dictionary": "sae", "feature": 3, "strength": 2.0,
                        "prompt": "The cat sat on the mat and", "max_new_tokens": 48}
                gen = threading.Thread(target=lambda: httpx.post(srv.url + "/api/steer", json=body, timeout=None))
                gen.start()
                while not httpx.get(srv.url + "/api/model").json()["busy"]:
                    time.sleep(0.01)
            t0 = time.perf_counter()
            lat, errors = asyncio.run(fire(srv.url, args.requests, args.concurrency, D_SAE))
            wall = time.perf_counter() - t0
            busy_after = httpx.get(srv.url + "/api/model").json()["busy"]
            if gen is not None:
                gen.join()
        finally:
            srv.stop()
    ms_ = [x * 1000 for x in lat]
    print(f"feature cards: {args.requests} requests, concurrency {args.concurrency}, errors {errors}"
          + (f", model thread busy with a generation throughout: {busy_after}" if args.with_generation else ""))
    print(f"latency ms: p50 {percentile(ms_, .5):.1f}  p90 {percentile(ms_, .9):.1f}  p99 {percentile(ms_, .99):.1f}"
          f"  max {max(ms_):.1f}  mean {statistics.mean(ms_):.1f}")
    print(f"throughput: {args.requests / wall:.0f} requests/s over {wall:.2f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
