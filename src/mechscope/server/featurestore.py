"""Thin adapter from the API to :class:`mechscope.features.FeatureDB` (the SQLite feature database).

Connections are cached per thread (SQLite connections belong to the thread that opened them) and keyed by the
file's modification time, so a rebuilt database is picked up. Free-text queries are quoted word by word before
they reach FTS5, so user input is never FTS syntax (no errors from stray quotes or operators).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .runs import RunError, RunInfo

log = logging.getLogger(__name__)
_local = threading.local()
MAX_OPEN_PER_THREAD = 8


def backend() -> str:
    """Which feature-database implementation is available (shown in ``/api/info``)."""
    try:
        from ..features import db  # noqa: F401
    except ImportError as e:
        return f"unavailable ({e})"
    return "mechscope.features.FeatureDB"


def open_db(path: Path) -> Any:
    """A :class:`FeatureDB` for ``path`` (cached on this thread while the file is unchanged)."""
    try:
        from ..features import FeatureDB, FeatureError
    except ImportError as e:
        raise RunError(f"this installation cannot read feature databases: {e}", 501) from None
    cache: dict = getattr(_local, "dbs", None) or {}
    _local.dbs = cache
    key = (str(path), path.stat().st_mtime_ns)
    db = cache.get(key)
    if db is None:
        try:
            db = FeatureDB(path)
        except (FeatureError, OSError, ValueError) as e:
            raise RunError(f"cannot open feature database {path.name}: {_local_msg(e, path)}", 409) from None
        for old in [k for k in cache if k[0] == key[0]]:
            cache.pop(old).close()
        if len(cache) >= MAX_OPEN_PER_THREAD:
            cache.pop(next(iter(cache))).close()
        cache[key] = db
    return db


def _local_msg(e: Exception, path: Path) -> str:
    """The error's message with the server-side path of the file shortened to its name."""
    return str(e).replace(str(path), path.name)


def _damaged(db: Any, e: Exception) -> RunError:
    return RunError(f"feature database {db.path.name} cannot be read: {_local_msg(e, db.path)}", 409)


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word a quoted phrase (ANDed), so no operator syntax gets through."""
    words = re.findall(r"\w+", text)
    return " ".join(f'"{w}"' for w in words[:16])


def _row_stats(db: Any, ids: list[int]) -> dict[int, tuple]:
    """``{id: (frequency, max_act, explanation)}`` from the ``features`` table (schema in features/db.py)."""
    if not ids:
        return {}
    from ..features.db import FeatureDBError

    marks = ",".join("?" * len(ids))
    try:
        rows = db.con.execute(f"SELECT id, frequency, max_act, explanation FROM features WHERE id IN ({marks})", ids)
    except FeatureDBError as e:
        raise _damaged(db, e) from None
    return {int(r[0]): (r[1], r[2], r[3]) for r in rows}


def search(db: Any, query: str, limit: int) -> tuple[list[dict], str]:
    """Hits for ``query``: a feature number, ``token:WORD`` (features promoting it), or free text (full-text
    search over explanations and top examples). Empty text lists the most frequent features."""
    from ..features import FeatureError
    from ..features.db import FeatureDBError

    q = query.strip()
    scored: list[tuple[int, float | None, str]]
    try:
        if re.fullmatch(r"#?\d+", q):
            f = db.check(int(q.lstrip("#")))
            scored, how = [(f, None, "")], "feature id"
        elif q.lower().startswith("token:"):
            scored = [(f, v, "") for f, v in db.by_token(q[6:], "promoted", limit)]
            how = "features promoting the token (logit effect)"
            if not scored:
                scored = [(f, v, "") for f, v in db.by_token(q[6:], "activating", limit)]
                how = "features peaking on the token"
        elif q:
            fq = fts_query(q)
            if not fq:
                raise RunError(f"search text {query!r} has no words to look for", 422)
            scored, how = [(f, None, snip) for f, snip in db.search(fq, limit)], "full-text search"
        else:
            scored = [(f, v, "") for f, v in db.by_density(0.0, 1.0, limit)]
            how = "most frequent features"
    except FeatureDBError as e:
        raise _damaged(db, e) from None
    except FeatureError as e:
        raise RunError(str(e), 404 if "out of range" in str(e) else 422) from None
    stats = _row_stats(db, [f for f, _, _ in scored])
    hits = []
    for f, score, snippet in scored:
        freq, mx, expl = stats.get(f, (None, None, None))
        hits.append({"feature": f, "label": expl or snippet, "score": finite(score), "frequency": finite(freq),
                     "max_activation": finite(mx)})
    return hits, how


_cards: OrderedDict[tuple, dict] = OrderedDict()
_cards_lock = threading.Lock()
MAX_CACHED_CARDS = 2048


def card(db: Any, feature: int) -> dict:
    """``FeatureDB.card`` as JSON-safe data (non-finite floats become null), cached while the file is unchanged."""
    from ..features import FeatureError
    from ..features.db import FeatureDBError

    key = (str(db.path), db.path.stat().st_mtime_ns, int(feature))
    with _cards_lock:
        hit = _cards.get(key)
        if hit is not None:
            _cards.move_to_end(key)
            return hit
    try:
        c = db.card(feature)
    except FeatureDBError as e:
        raise _damaged(db, e) from None
    except (FeatureError, IndexError) as e:
        raise RunError(str(e)) from None
    except (ValueError, TypeError) as e:  # a row whose JSON columns do not parse
        raise _damaged(db, e) from None
    data = clean(dataclasses.asdict(c))
    data["explanation_status"] = c.explanation_status
    with _cards_lock:
        _cards[key] = data
        while len(_cards) > MAX_CACHED_CARDS:
            _cards.popitem(last=False)
    return data


def dashboard_for(info: RunInfo, db_path: str, feature: int) -> str | None:
    """The dashboard page of ``feature`` in the run (next to ``db_path`` first), matched by file name."""
    pat = re.compile(rf"(^|[^0-9]){feature}\.html$")
    here = str(Path(db_path).parent)
    pages = [p for p in info.dashboards if pat.search(Path(p).name)]
    pages.sort(key=lambda p: (not p.startswith(here + "/") if here != "." else False, len(p)))
    return pages[0] if pages else None


def db_for_layer(registry: Any, run: str, info: RunInfo, layer: int) -> str | None:
    """The feature database for graph nodes at ``layer``: a transcoder's (it reads ``blocks.L.mlp_in``, as every
    graph feature does) first; another dictionary at that layer only when the run has no transcoder database
    there (the card then describes that dictionary's feature of the same index)."""
    fallback = None
    for rel in info.feature_dbs:
        try:
            db = open_db(registry.resolve(run, rel))
        except RunError:
            continue
        hooks = db.meta.get("hook_names") or []
        hooks = [str(h) for h in ([hooks] if isinstance(hooks, str) else hooks)]
        if any(re.match(rf"^blocks\.{layer}\.(hook_)?mlp_in$", h) for h in hooks):
            return rel
        if fallback is None and any(re.match(rf"^blocks\.{layer}\.", h) for h in hooks):
            fallback = rel
    return fallback


def finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def clean(obj: Any) -> Any:
    """Recursively replace non-finite floats with None and tuples with lists (JSON-safe)."""
    if isinstance(obj, float):
        return finite(obj)
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj
