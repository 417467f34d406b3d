"""Configuration of ``mechscope serve`` (the CLI options are generated from :class:`ServeConfig`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Hard bounds of request fields, checked by the pydantic request models (422 with a clear message).
MAX_PROMPT_CHARS = 2000
MAX_QUERY_CHARS = 200
MAX_NEW_TOKENS = 64
MAX_PATCH_TOKENS = 48


@dataclass
class ServeConfig:
    """What ``mechscope serve`` serves and how."""

    runs: str
    """Folder whose sub-folders are the run folders served (each holding dictionaries, features.db, dashboards/,
    graph.json, report.html, eval.json or metrics.jsonl); the folder itself is served as a run when it holds any."""
    port: int = 8765
    """TCP port to listen on (0 picks a free one)."""
    host: str = "127.0.0.1"
    """Address to bind. Loopback by default; anything else exposes the model to the network and needs
    --allow-remote."""
    allow_remote: bool = False
    """Allow binding a non-loopback --host."""
    model: str = "smollm2-135m"
    """Model used by steering, logit lens and patching (a built-in name, hub id, local folder or .gguf); loaded on
    the first request that needs it."""
    max_body_bytes: int = 65536
    """Largest request body accepted; larger ones get 413."""
    max_prompt_tokens: int = 128
    """Largest prompt, in tokens, that model requests accept; longer ones get 413."""
    max_queue: int = 8
    """Model requests allowed to wait for the model worker at once; more get 503 (try again later)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback and not self.allow_remote:
            raise ValueError(f"host {self.host!r} is not a loopback address; pass --allow-remote to expose the "
                             f"server beyond this machine")
        for name in ("max_body_bytes", "max_prompt_tokens", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
