"""A small OpenAI-compatible chat server over a local model (default: the built-in SmolLM2-135M-Instruct).

    python -m mechscope.features.llm_server --model smollm2-135m --port 0 --idle-timeout 600 [--threads 1]

Binds 127.0.0.1 only. With ``--port 0`` it picks a free port and prints one line
``mechscope-llm-server listening on http://127.0.0.1:PORT`` once it accepts requests. It stops by itself after
``--idle-timeout`` seconds without a request, and when its parent process exits. Endpoints: ``GET /health``,
``GET /v1/models``, ``POST /v1/chat/completions`` (``messages``, ``max_tokens``, ``temperature``, ``logprobs``,
``top_logprobs``, ``seed``), ``POST /shutdown``.
"""

# No ``from __future__ import annotations``: FastAPI resolves the request models defined inside create_app.
import argparse
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from .llm import LocalClient


def create_app(client: LocalClient, on_request: Any = None):
    """The FastAPI app serving ``client``; ``on_request()`` is called on every request (idle tracking)."""
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel

    class ChatMessage(BaseModel):
        role: str
        content: str

    class ChatRequest(BaseModel):
        model: str | None = None
        messages: list[ChatMessage]
        max_tokens: int | None = 256
        temperature: float = 0.0
        logprobs: bool = False
        top_logprobs: int | None = None
        seed: int | None = 0

    app = FastAPI(title="mechscope LLM server")
    state: dict[str, Any] = {"server": None}
    app.state.mechscope = state

    def touch() -> None:
        if on_request is not None:
            on_request()

    @app.get("/health")
    def health() -> dict[str, str]:
        touch()
        return {"status": "ok", "model": client.name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        touch()
        return {"object": "list", "data": [{"id": client.name, "object": "model", "owned_by": "mechscope"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict[str, Any]:
        touch()
        if not req.messages:
            raise HTTPException(400, "messages must not be empty")
        n_top = (req.top_logprobs or 1) if req.logprobs else 0
        if not 0 <= n_top <= 20:
            raise HTTPException(400, "top_logprobs must be between 0 and 20")
        c = client.complete([m.model_dump() for m in req.messages], max(1, min(req.max_tokens or 256, 2048)),
                            req.temperature, top_logprobs=n_top, seed=req.seed)
        logprobs = None
        if req.logprobs:
            logprobs = {"content": [{"token": t.token, "logprob": t.logprob,
                                     "top_logprobs": [{"token": a, "logprob": b} for a, b in t.top]}
                                    for t in c.tokens]}
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": client.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                             "finish_reason": c.finish_reason, "logprobs": logprobs}],
                "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": len(c.tokens),
                          "total_tokens": c.prompt_tokens + len(c.tokens)}}

    @app.post("/shutdown")
    def shutdown() -> dict[str, str]:
        if state["server"] is not None:
            state["server"].should_exit = True
        return {"status": "stopping"}

    return app


def serve(model: str = "smollm2-135m", port: int = 0, idle_timeout: float = 600.0, announce: Any = None) -> None:
    """Run the server until idle for ``idle_timeout`` seconds, the parent exits, or ``/shutdown``."""
    import uvicorn

    client = LocalClient(model)
    last = [time.monotonic()]
    app = create_app(client, on_request=lambda: last.__setitem__(0, time.monotonic()))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    app.state.mechscope["server"] = server
    parent = os.getppid()

    def announcer() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started and announce is not None:
            announce(sock.getsockname()[1])

    threading.Thread(target=watchdog_loop(server, last, idle_timeout, parent), daemon=True).start()
    threading.Thread(target=announcer, daemon=True).start()
    server.run(sockets=[sock])


def watchdog_loop(server: Any, last: list[float], idle_timeout: float, parent: int):
    def run() -> None:
        while not server.should_exit:
            time.sleep(0.5)
            if time.monotonic() - last[0] > idle_timeout or os.getppid() != parent:
                server.should_exit = True
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="built-in name, hub id or local folder of a chat model")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="stop after this many seconds without requests")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 is much faster "
                   "than 2 on a machine other jobs keep busy")
    args = p.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)

    def announce(port: int) -> None:
        sys.stdout.write(f"mechscope-llm-server listening on http://127.0.0.1:{port}\n")
        sys.stdout.flush()

    serve(args.model, args.port, args.idle_timeout, announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
