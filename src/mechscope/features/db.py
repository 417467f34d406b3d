"""The feature database: one SQLite file per run with statistics, examples, logit effects and explanations.

Schema (``meta.schema_version`` = 1). JSON columns hold lists/dicts as text; every table is keyed by feature id::

    meta(key TEXT PRIMARY KEY, value TEXT)          JSON values: model, hook_names, d_sae, n_tokens, hist_edges,
                                                    dictionary, fingerprint, schema_version, complete
    features(id INTEGER PRIMARY KEY, frequency REAL, n_active INTEGER, max_act REAL, mean_act REAL,
             mean_active REAL, hist TEXT /* JSON counts per bin, edges in meta.hist_edges */,
             explanation TEXT /* NULL: none, or none usable (see scores.status) */,
             scores TEXT /* JSON {scorer: {precision, recall, ...}, "status": ok|no_explanation|...} */)
    examples(feature, kind TEXT /* 'top' or 'q<i>' (activation quantile bin i) */, rank, activation REAL,
             position INTEGER /* index of the max in tokens */, sequence INTEGER, max_token TEXT,
             tokens TEXT, str_tokens TEXT, acts TEXT /* JSON lists */, text TEXT, PRIMARY KEY(feature, kind, rank))
    logit_effects(feature, sign INTEGER /* +1 promoted, -1 suppressed */, rank, token_id, token TEXT, value REAL)
    input_tokens(feature, rank, token_id, token TEXT, value REAL)       -- de-embedding (transcoders)
    neighbours(feature, rank, other INTEGER, cosine REAL)               -- nearest decoder directions
    cooccurrence(a INTEGER, b INTEGER, count INTEGER, jaccard REAL)
    search: FTS5(explanation, examples), rowid = feature id             -- full-text search

Building streams features into the file in chunks and is resumable: :func:`build_database` writes
``NAME.partial`` next to the target, records each finished chunk in a ``progress`` table (committed with the
chunk), and on a rerun with the same inputs (same ``fingerprint``) continues after the last finished chunk. Only a
complete file is moved into place (``os.replace``), so ``NAME`` is never half-written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .logits import LogitEffects, TokenScore, logit_effects, nearest_features, top_input_tokens
from .source import FeatureError
from .stats import Example, FeatureStats

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS features(id INTEGER PRIMARY KEY, frequency REAL, n_active INTEGER, max_act REAL,
    mean_act REAL, mean_active REAL, hist TEXT, explanation TEXT, scores TEXT);
CREATE TABLE IF NOT EXISTS examples(feature INTEGER, kind TEXT, rank INTEGER, activation REAL, position INTEGER,
    sequence INTEGER, max_token TEXT, tokens TEXT, str_tokens TEXT, acts TEXT, text TEXT,
    PRIMARY KEY(feature, kind, rank));
CREATE TABLE IF NOT EXISTS logit_effects(feature INTEGER, sign INTEGER, rank INTEGER, token_id INTEGER, token TEXT,
    value REAL, PRIMARY KEY(feature, sign, rank));
CREATE TABLE IF NOT EXISTS input_tokens(feature INTEGER, rank INTEGER, token_id INTEGER, token TEXT, value REAL,
    PRIMARY KEY(feature, rank));
CREATE TABLE IF NOT EXISTS neighbours(feature INTEGER, rank INTEGER, other INTEGER, cosine REAL,
    PRIMARY KEY(feature, rank));
CREATE TABLE IF NOT EXISTS cooccurrence(a INTEGER, b INTEGER, count INTEGER, jaccard REAL, PRIMARY KEY(a, b));
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(explanation, examples);
CREATE TABLE IF NOT EXISTS progress(chunk INTEGER PRIMARY KEY);
CREATE INDEX IF NOT EXISTS examples_token ON examples(max_token);
CREATE INDEX IF NOT EXISTS logits_token ON logit_effects(token);
CREATE INDEX IF NOT EXISTS features_freq ON features(frequency);
"""


@dataclass
class FeatureCard:
    """Everything the database knows about one feature."""

    feature: int
    frequency: float
    n_active: int
    max_act: float
    mean_act: float
    mean_active: float
    hist: list[int]
    hist_edges: list[float]
    explanation: str | None
    scores: dict[str, Any]
    top_examples: list[Example]
    quantile_examples: list[list[Example]]
    promoted: list[TokenScore] = field(default_factory=list)
    suppressed: list[TokenScore] = field(default_factory=list)
    input_tokens: list[TokenScore] = field(default_factory=list)
    neighbours: list[tuple[int, float]] = field(default_factory=list)

    @property
    def explanation_status(self) -> str | None:
        """How the explanation came about (``scores["status"]``: ``ok``, ``no_explanation`` when the model gave
        nothing usable, ``partly_unscored`` / ``unscored`` when score replies could not be used); None if never
        explained."""
        status = (self.scores or {}).get("status")
        return status if isinstance(status, str) else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the ``card`` layout of the web UI's API)."""
        return dataclasses.asdict(self)

    def view(self):
        """The web UI's feature card (:func:`mechscope.display.feature_card`)."""
        from .. import display

        return display.feature_card(self.to_dict())

    def _repr_html_(self) -> str:
        return self.view().html()


def _fingerprint(stats: FeatureStats, extra: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps([stats.meta, stats.n_tokens, stats.n_sequences, float(stats.act_sum.sum()),
                                   extra], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _example_row(ex: Example, kind: str, rank: int) -> tuple:
    strs = ex.str_tokens or [str(t) for t in ex.tokens]
    return (ex.feature, kind, rank, ex.activation, ex.position, ex.sequence, strs[ex.position].strip(),
            json.dumps(ex.tokens), json.dumps(strs), json.dumps([round(a, 5) for a in ex.acts]), "".join(strs))


def build_database(path: str | os.PathLike[str], stats: FeatureStats, model: Any = None, dictionary: Any = None, *,
                   k_logits: int = 10, k_neighbours: int = 5, input_tokens: bool | None = None,
                   per_quantile: int = 3, chunk: int = 256, progress: bool = False,
                   _stop_after_chunks: int | None = None) -> Path:
    """Write ``path`` (SQLite, schema in the module docstring) from ``stats`` and, when given, the dictionary's
    weights (logit effects need ``model`` and ``dictionary``). Resumes an interrupted build of the same inputs.

    ``input_tokens``: add de-embedding tokens (None: only for transcoders). ``_stop_after_chunks`` stops early,
    leaving the partial file (used to test resuming).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    extra = {"dictionary": None if dictionary is None else repr(dictionary), "k": [k_logits, k_neighbours],
             "chunk": chunk, "pq": per_quantile}
    fp = _fingerprint(stats, extra)
    if tmp.exists():
        try:
            with sqlite3.connect(tmp) as c:
                old = c.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        except sqlite3.DatabaseError:
            old = None
        if old is None or json.loads(old[0]) != fp:
            log.info("discarding a partial database built from other inputs: %s", tmp)
            tmp.unlink()
    con = sqlite3.connect(tmp)
    try:
        con.executescript(_SCHEMA)
        meta = {**stats.meta, "d_sae": stats.d_sae, "n_tokens": stats.n_tokens, "n_sequences": stats.n_sequences,
                "hist_edges": stats.hist_edges.tolist(), "fingerprint": fp, "schema_version": SCHEMA_VERSION,
                "dictionary": extra["dictionary"], "complete": False}
        con.executemany("INSERT OR REPLACE INTO meta VALUES(?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
        done = {r[0] for r in con.execute("SELECT chunk FROM progress")}
        if done:
            log.info("resuming %s: %d chunks already written", tmp, len(done))
        n = stats.d_sae
        chunks = [c for c in range(0, n, chunk) if c // chunk not in done]
        transcoder = bool(dictionary is not None and getattr(dictionary.cfg, "transcoder", False))
        want_inputs = (transcoder if input_tokens is None else input_tokens) and dictionary is not None
        for i, start in enumerate(tqdm(chunks, desc="feature db", disable=not progress)):
            if _stop_after_chunks is not None and i >= _stop_after_chunks:
                return tmp
            feats = list(range(start, min(start + chunk, n)))
            _write_chunk(con, stats, feats, model, dictionary, k_logits, k_neighbours, want_inputs, per_quantile)
            con.execute("INSERT INTO progress VALUES(?)", (start // chunk,))
            con.commit()
        _write_cooccurrence(con, stats)
        con.execute("DELETE FROM progress")
        con.execute("INSERT OR REPLACE INTO meta VALUES('complete', 'true')")
        con.commit()
    finally:
        con.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def _write_chunk(con: sqlite3.Connection, stats: FeatureStats, feats: list[int], model: Any, dictionary: Any,
                 k_logits: int, k_neighbours: int, want_inputs: bool, per_quantile: int) -> None:
    freq, mean, mean_active = stats.frequency, stats.mean_act, stats.mean_active
    con.executemany("INSERT OR REPLACE INTO features VALUES(?, ?, ?, ?, ?, ?, ?, NULL, NULL)", [
        (f, float(freq[f]), int(stats.active_count[f]), float(stats.max_act[f]), float(mean[f]),
         float(mean_active[f]), json.dumps(stats.hist[f].tolist())) for f in feats])
    rows, fts = [], []
    for f in feats:
        top = stats.top_examples(f)
        rows += [_example_row(ex, "top", r) for r, ex in enumerate(top)]
        for q, group in enumerate(stats.quantile_examples(f, per_quantile)):
            rows += [_example_row(ex, f"q{q}", r) for r, ex in enumerate(group)]
        fts.append((f, "", "\n".join(ex.text() for ex in top)))
    con.executemany("INSERT OR REPLACE INTO examples VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.executemany("DELETE FROM search WHERE rowid = ?", [(f,) for f in feats])
    con.executemany("INSERT INTO search(rowid, explanation, examples) VALUES(?, ?, ?)", fts)
    if dictionary is None:
        return
    nbrs = nearest_features(dictionary, feats, k_neighbours)
    con.executemany("INSERT OR REPLACE INTO neighbours VALUES(?, ?, ?, ?)",
                    [(f, r, o, c) for f, lst in nbrs.items() for r, (o, c) in enumerate(lst)])
    if model is None:
        return
    try:
        effects: list[LogitEffects] = logit_effects(model, dictionary, feats, k_logits)
    except FeatureError as e:  # a dictionary writing outside the residual stream has no direct logit effects
        log.info("no logit effects: %s", e)
        effects = []
    con.executemany("INSERT OR REPLACE INTO logit_effects VALUES(?, ?, ?, ?, ?, ?)", [
        (e.feature, sign, r, t.token_id, t.token.strip(), t.value)
        for e in effects for sign, lst in ((1, e.promoted), (-1, e.suppressed)) for r, t in enumerate(lst)])
    if want_inputs:
        ins = top_input_tokens(model, dictionary, feats, k_logits)
        con.executemany("INSERT OR REPLACE INTO input_tokens VALUES(?, ?, ?, ?, ?)",
                        [(f, r, t.token_id, t.token.strip(), t.value) for f, lst in ins.items()
                         for r, t in enumerate(lst)])


def _write_cooccurrence(con: sqlite3.Connection, stats: FeatureStats) -> None:
    if stats.cooc_counts is None:
        return
    feats, jac = stats.cooccurrence()
    con.executemany("INSERT OR REPLACE INTO cooccurrence VALUES(?, ?, ?, ?)", [
        (a, b, int(stats.cooc_counts[i, j]), float(jac[i, j]))
        for i, a in enumerate(feats) for j, b in enumerate(feats) if stats.cooc_counts[i, j] > 0])


class FeatureDBError(FeatureError):
    """A feature database file that cannot be read: empty, not SQLite, truncated, corrupt or without the schema.
    The message names the file."""


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_sqlite_file(path: Path) -> None:
    """:class:`FeatureDBError` naming ``path`` unless it starts like a whole SQLite file (header and size).

    Reads the 100-byte header only: the magic string, and the page size times the page count the header records
    (when that count is current) against the file's size, which catches a truncated copy at once.
    """
    size = path.stat().st_size
    if size == 0:
        raise FeatureDBError(f"feature database {path} is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(SQLITE_MAGIC):
        raise FeatureDBError(f"{path} is not a feature database: it is not an SQLite file")
    if len(head) < 100:
        raise FeatureDBError(f"feature database {path} is truncated ({size} bytes, shorter than an SQLite header)")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    n_pages = int.from_bytes(head[28:32], "big")
    if n_pages and head[24:28] == head[92:96] and size < page_size * n_pages:
        raise FeatureDBError(f"feature database {path} is truncated: {size} bytes, its header records "
                             f"{n_pages} pages of {page_size} bytes ({n_pages * page_size} bytes)")


class _Rows(list):
    """Rows already fetched (a damaged page then fails inside the query call, where the file is named)."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list:
        return list(self)


class _Connection:
    """An ``sqlite3`` connection whose errors name the file (:class:`FeatureDBError`) and whose queries return
    their rows fetched. ``raw`` is the plain connection."""

    def __init__(self, path: Path):
        self.path = path
        self.raw = sqlite3.connect(path)

    def error(self, e: sqlite3.Error) -> FeatureDBError:
        if "no such table" in str(e) or "no such column" in str(e):
            return FeatureDBError(f"{self.path} is not a mechscope feature database ({e})")
        return FeatureDBError(f"feature database {self.path} cannot be read ({e}); it may be truncated or corrupt: "
                              f"build it again")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        try:
            return _Rows(self.raw.execute(sql, params).fetchall())
        except sqlite3.DatabaseError as e:
            raise self.error(e) from None

    def executemany(self, sql: str, rows: Any) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.DatabaseError as e:
            raise self.error(e) from None

    def __enter__(self) -> _Connection:
        self.raw.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.raw.__exit__(*exc)
        except sqlite3.DatabaseError as e:
            raise self.error(e) from None

    def close(self) -> None:
        self.raw.close()


class FeatureDB:
    """Read (and annotate) a finished feature database.

    A file that is not a complete, readable feature database (empty, not SQLite, truncated, corrupt, another
    schema) raises :class:`FeatureDBError` naming it, when opened or at the query that meets the damage.

    >>> db = FeatureDB("run/features.db")
    >>> db.search("comments"); db.by_token("def"); db.by_density(1e-3, 1e-1); db.card(12)
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            partial = self.path.with_name(self.path.name + ".partial")
            hint = (f" (an unfinished build is at {partial}; run the build again to resume it)"
                    if partial.exists() else "")
            raise FileNotFoundError(f"no feature database at {self.path}{hint}")
        check_sqlite_file(self.path)
        self.con = _Connection(self.path)
        try:
            self.meta = {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM meta")}
            if not self.meta.get("complete"):
                raise FeatureError(f"{self.path} is not a complete feature database")
            d_sae = self.meta.get("d_sae")
            if isinstance(d_sae, bool) or not isinstance(d_sae, int) or d_sae < 1:
                raise FeatureDBError(f"{self.path} records no valid d_sae in its meta table (got {d_sae!r})")
            self.con.execute("SELECT id FROM features LIMIT 1")
        except (ValueError, TypeError) as e:
            self.con.close()
            if isinstance(e, FeatureError):
                raise
            raise FeatureDBError(f"{self.path} has an unreadable meta table: {e}") from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> FeatureDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def d_sae(self) -> int:
        return int(self.meta["d_sae"])

    def check(self, feature: int) -> int:
        if not 0 <= int(feature) < self.d_sae:
            raise FeatureError(f"feature {int(feature)} is out of range: the database holds {self.d_sae} features "
                               f"(valid 0..{self.d_sae - 1})")
        return int(feature)

    def _examples(self, f: int, kind_pattern: str) -> list[tuple[str, Example]]:
        rows = self.con.execute(
            "SELECT kind, activation, position, sequence, tokens, str_tokens, acts FROM examples "
            "WHERE feature = ? AND kind LIKE ? ORDER BY kind, rank", (f, kind_pattern)).fetchall()
        return [(k, Example(f, a, json.loads(t), json.loads(ac), p, s, json.loads(st)))
                for k, a, p, s, t, st, ac in rows]

    def examples(self, feature: int, kind: str = "top") -> list[Example]:
        """Stored examples of one kind: ``top`` or ``q<i>`` (activation quantile bin i)."""
        return [e for _, e in self._examples(self.check(feature), kind)]

    def card(self, feature: int) -> FeatureCard:
        """All stored information on ``feature``."""
        f = self.check(feature)
        row = self.con.execute("SELECT frequency, n_active, max_act, mean_act, mean_active, hist, explanation, scores "
                               "FROM features WHERE id = ?", (f,)).fetchone()
        if row is None:
            raise FeatureError(f"feature {f} has no row in {self.path}")
        freq, n_active, mx, mean, mean_active, hist, expl, scores = row
        quant: list[list[Example]] = [[] for _ in range(sum(1 for _ in self._quantile_kinds(f)))]
        for kind, ex in self._examples(f, "q%"):
            quant[int(kind[1:])].append(ex)
        logits = self.con.execute("SELECT sign, token_id, token, value FROM logit_effects WHERE feature = ? "
                                  "ORDER BY sign DESC, rank", (f,)).fetchall()
        ins = self.con.execute("SELECT token_id, token, value FROM input_tokens WHERE feature = ? ORDER BY rank",
                               (f,)).fetchall()
        nb = self.con.execute("SELECT other, cosine FROM neighbours WHERE feature = ? ORDER BY rank", (f,)).fetchall()
        return FeatureCard(
            f, freq, n_active, mx, mean, mean_active, json.loads(hist), self.meta["hist_edges"], expl,
            json.loads(scores) if scores else {}, self.examples(f, "top"), quant,
            [TokenScore(i, t, v) for s, i, t, v in logits if s > 0],
            [TokenScore(i, t, v) for s, i, t, v in logits if s < 0],
            [TokenScore(*r) for r in ins], [tuple(r) for r in nb])

    def _quantile_kinds(self, f: int) -> list[str]:
        rows = self.con.execute("SELECT DISTINCT kind FROM examples WHERE feature = ? AND kind LIKE 'q%'", (f,))
        kinds = [r[0] for r in rows]
        n = max((int(k[1:]) for k in kinds), default=-1) + 1
        return [f"q{i}" for i in range(n)]

    def search(self, query: str, limit: int = 20) -> list[tuple[int, str]]:
        """Full-text search over explanations and example text: ``[(feature, snippet)]``, best match first.

        ``query`` is FTS5 syntax (words are ANDed; ``"a b"`` for a phrase; ``explanation: word`` for one column).
        """
        try:
            rows = self.con.raw.execute("SELECT rowid, snippet(search, -1, '[', ']', '...', 8) FROM search "
                                        "WHERE search MATCH ? ORDER BY bm25(search) LIMIT ?", (query, limit)).fetchall()
        except sqlite3.OperationalError as e:
            if "malformed" in str(e) or "no such table" in str(e) or "not a database" in str(e):
                raise self.con.error(e) from None
            raise FeatureError(f"bad search query {query!r}: {e}") from None
        except sqlite3.DatabaseError as e:
            raise self.con.error(e) from None
        return [(int(r), s) for r, s in rows]

    def by_token(self, token: str, where: str = "promoted", limit: int = 20) -> list[tuple[int, float]]:
        """Features that promote ``token`` (``where="promoted"``, by logit effect) or peak on it in their top
        examples (``where="activating"``, by activation): ``[(feature, value)]``, largest first."""
        tok = token.strip()
        if where == "promoted":
            sql = ("SELECT feature, MAX(value) v FROM logit_effects WHERE sign = 1 AND token = ? "
                   "GROUP BY feature ORDER BY v DESC LIMIT ?")
        elif where == "activating":
            sql = ("SELECT feature, MAX(activation) v FROM examples WHERE kind = 'top' AND max_token = ? "
                   "GROUP BY feature ORDER BY COUNT(*) DESC, v DESC LIMIT ?")
        else:
            raise FeatureError(f"where must be 'promoted' or 'activating', got {where!r}")
        return [(int(f), float(v)) for f, v in self.con.execute(sql, (tok, limit))]

    def by_density(self, min_frequency: float = 0.0, max_frequency: float = 1.0, limit: int = 100,
                   descending: bool = True) -> list[tuple[int, float]]:
        """Features whose activation frequency lies in ``[min_frequency, max_frequency]``."""
        order = "DESC" if descending else "ASC"
        rows = self.con.execute(f"SELECT id, frequency FROM features WHERE frequency BETWEEN ? AND ? "
                                f"ORDER BY frequency {order} LIMIT ?", (min_frequency, max_frequency, limit))
        return [(int(f), float(v)) for f, v in rows]

    def set_explanation(self, feature: int, explanation: str | None, scores: dict[str, Any] | None = None,
                        status: str | None = None) -> None:
        """Store an explanation (and its scores) for ``feature``; indexed for search in the same transaction.

        ``explanation=None`` records that the model gave no usable explanation (status ``no_explanation``); the
        status (default: ``ok`` with an explanation) is kept as ``scores["status"]`` and shown with the card.
        """
        f = self.check(feature)
        if explanation is not None and not str(explanation).strip():
            raise FeatureError("an explanation must hold text; pass explanation=None to record that there is none")
        status = status or ("ok" if explanation is not None else "no_explanation")
        with self.con:
            self.con.execute("UPDATE features SET explanation = ?, scores = ? WHERE id = ?",
                             (explanation, json.dumps({**(scores or {}), "status": status}), f))
            old = self.con.execute("SELECT examples FROM search WHERE rowid = ?", (f,)).fetchone()
            self.con.execute("DELETE FROM search WHERE rowid = ?", (f,))
            self.con.execute("INSERT INTO search(rowid, explanation, examples) VALUES(?, ?, ?)",
                             (f, explanation or "", old[0] if old else ""))

    def features(self, where: Callable[[FeatureCard], bool] | None = None,
                 ids: Sequence[int] | None = None) -> list[int]:
        """Feature ids (optionally filtered by a predicate on cards)."""
        all_ids = [r[0] for r in self.con.execute("SELECT id FROM features ORDER BY id")]
        ids = all_ids if ids is None else list(ids)
        return [f for f in ids if where is None or where(self.card(f))]
