"""Checks every view test makes: self-contained HTML, the spec it carries, the numbers it shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REMOTE = re.compile(r"""(?:\bsrc|\bhref|\baction)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//""",
                    re.I)


def spec_of(html: str) -> dict[str, Any]:
    """The JSON spec a view's HTML carries."""
    m = re.search(r'<script type="application/json" id="ms-data-[0-9a-f]+">(.*?)</script>', html, re.S)
    assert m, "no view spec in the HTML"
    return json.loads(m.group(1))


def check_self_contained(html: str) -> None:
    """No element or style of the view fetches anything: no remote src/href/@import/url()."""
    hits = REMOTE.findall(html)
    assert not hits, f"the view would fetch from the network: {hits[:3]}"
    assert "<script src" not in html and "<link" not in html


def flat_numbers(obj: Any) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in flat_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in flat_numbers(v)]
    return []


def has_number(spec: dict[str, Any], value: float, rel: float = 1e-5) -> bool:
    return any(abs(x - value) <= rel * max(1.0, abs(value)) for x in flat_numbers(spec))


def kinds(spec: dict[str, Any]) -> list[str]:
    """Every view kind in a spec tree (panels included)."""
    return [spec["kind"]] + [k for c in spec.get("children", []) for k in kinds(c)]


def open_offline(browser: Any, html: str, path: Path, *, wait_ms: int, **page_options: Any) -> Any:
    """Write ``html`` to ``path`` and open it in a new page of ``browser``; fails on any script error or any request
    that leaves the page (only ``file://``). Returns the page."""
    path.write_text(html)
    page = browser.new_page(**page_options)
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_timeout(wait_ms)
    assert not errors, errors
    assert all(u.startswith("file://") for u in requests), requests
    return page
