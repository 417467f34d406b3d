"""Configuration of ``mechscope serve`` (the CLI options are generated from :class:`ServeConfig`)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

# Hard bounds of request fields, checked by the pydantic request models (422 with a clear message).
MAX_PROMPT_CHARS = 2000
MAX_QUERY_CHARS = 200
MAX_NEW_TOKENS = 64
MAX_PATCH_TOKENS = 48
MIN_TOKEN_CHARS = 16
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")


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
    token: str | None = None
    """API token every /api request must carry (header ``Authorization: Bearer TOKEN`` or ``X-Mechscope-Token``,
    or ``?token=`` in the page's URL). A non-loopback --host always requires one: without --token a random one is
    generated and printed with the URL. On loopback no token is needed unless one is given."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if not self.loopback and not self.allow_remote:
            raise ValueError(f"host {self.host!r} is not a loopback address; pass --allow-remote to expose the "
                             f"server beyond this machine")
        if self.token is not None:
            if len(self.token) < MIN_TOKEN_CHARS or not TOKEN_CHARS.fullmatch(self.token):
                raise ValueError(f"--token must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - _ . ~ "
                                 f"(it travels in headers and URLs), got {len(self.token)} characters")
        elif not self.loopback:
            self.token = secrets.token_urlsafe(24)  # a server reachable from the network never runs open
        for name in ("max_body_bytes", "max_prompt_tokens", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address (only this machine can connect)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    def url(self, port: int | None = None) -> str:
        """The address to open, with ``?token=`` when the server requires one."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/" + (f"?token={self.token}" if self.token else "")
