"""Named sources, splits and mixtures: spec grammar, error messages, ratios, determinism."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from mechscope.data import (DataSourceError, code_corpus, mixture, mixture_components, open_source, split_of,
                            stdlib_corpus, stdlib_files)
from mechscope.data.corpora import build_prose
from mechscope.data.splits import HELDOUT_FRACTION, mixture_tagged

from .prose_fixture import PACKAGES, write_prose_tree


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """An empty MECHSCOPE_HOME (no prose corpus fetched)."""
    monkeypatch.setenv("MECHSCOPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fetched(home: Path, tmp_path: Path) -> Path:
    """A MECHSCOPE_HOME holding a small prose corpus built from fixture files."""
    build_prose(write_prose_tree(tmp_path / "extract", 300), home / "corpora" / "prose", packages=PACKAGES)
    return home


def test_split_of_is_deterministic_with_the_stated_fraction() -> None:
    keys = [f"doc-{i}" for i in range(20000)]
    first = [split_of(k) for k in keys]
    assert first == [split_of(k) for k in keys]
    assert abs(first.count("heldout") / len(keys) - HELDOUT_FRACTION) < 0.006


def _fake_stdlib(root: Path, n: int = 60) -> Path:
    for i in range(n):
        sub = root / ("pkg" if i % 3 else "") / f"m{i:02d}.py"
        sub.parent.mkdir(parents=True, exist_ok=True)
        sub.write_text(f"# module {i}\n")
    return root


def test_code_splits_partition_stdlib_and_stdlib_keeps_its_order(tmp_path: Path) -> None:
    root = _fake_stdlib(tmp_path / "lib", 200)
    train, held, every = (list(code_corpus(s, root)) for s in ("train", "heldout", "all"))
    assert held and set(train).isdisjoint(held) and sorted(train + held) == sorted(every)
    assert list(code_corpus("train", root)) == train  # stable across calls
    assert sorted(every) == sorted(stdlib_corpus(root)) and every != list(stdlib_corpus(root))  # hashed order
    legacy = [f.read_text() for f in stdlib_files(root)]
    assert list(stdlib_corpus(root)) == legacy  # 'stdlib' is the historical stream, untouched
    assert sorted(stdlib_corpus(root, split="heldout")) == sorted(held)


def test_open_source_names_and_aliases(fetched: Path) -> None:
    assert list(open_source("stdlib", max_docs=3)) == list(stdlib_corpus(max_docs=3))
    assert list(open_source("code", max_docs=2)) == list(code_corpus("train", max_docs=2))
    assert list(open_source("code@heldout", max_docs=2)) == list(code_corpus("heldout", max_docs=2))
    train, held = list(open_source("prose")), list(open_source("prose@heldout"))
    assert train and held and set(train).isdisjoint(held)
    assert sorted(open_source("prose@all")) == sorted(train + held)
    assert set(open_source("mixture@heldout")) <= set(held) | set(code_corpus("heldout"))


def test_unfetched_prose_names_the_fetch_command(home: Path) -> None:
    for spec in ("prose", "prose@heldout", "mixture", "mix:prose=0.5,code=0.5"):
        with pytest.raises(DataSourceError, match="mechscope data fetch prose.*--source code"):
            open_source(spec)  # raised when opened, before any document is read
    assert next(open_source("code"))  # code needs no fetch


@pytest.mark.parametrize("spec, message", [
    ("prosee", r"unknown source 'prosee'.*valid names: prose, code, stdlib, mixture"),
    ("wikipedia@train", r"unknown source 'wikipedia@train'.*valid names: prose, code, stdlib, mixture"),
    ("prose@test", r"unknown split 'test'.*valid splits: train, heldout, all"),
    ("mixture@dev", r"unknown split 'dev'"),
    ("mix:prose=0.7,code", r"not SPEC=WEIGHT"),
    ("mix:prose=0,code=1", r"positive weight"),
    ("mix:code=0.5,nope=0.5", r"unknown source 'nope'"),
    ("missing/dir", r"no such file or directory: missing/dir"),
])
def test_bad_specs_fail_at_once_naming_what_is_valid(home: Path, spec: str, message: str) -> None:
    with pytest.raises(DataSourceError, match=message):
        open_source(spec)


def test_mixture_components_of_named_and_explicit_mixtures() -> None:
    assert mixture_components("mixture") == [("prose", 0.7), ("code", pytest.approx(0.3))]
    assert mixture_components("mixture@heldout") == [("prose@heldout", 0.7), ("code@heldout", pytest.approx(0.3))]
    assert mixture_components("mix:a=3,b@all=1") == [("a", 0.75), ("b@all", 0.25)]


def _stream(tag: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [tag * rng.randint(1, 400) for _ in range(n)]


@pytest.mark.parametrize("weights", [(0.7, 0.3), (0.2, 0.5, 0.3)])
def test_mixture_holds_its_ratio_over_the_stream(weights: tuple[float, ...]) -> None:
    tags = "abc"[:len(weights)]
    streams = [_stream(t, 5000, i) for i, t in enumerate(tags)]
    docs = list(mixture(streams, weights))
    assert docs == list(mixture(streams, weights))  # deterministic
    for cut in (200, 1000, len(docs)):  # every prefix, not just the whole stream
        chars = {t: sum(len(d) for d in docs[:cut] if d[0] == t) for t in tags}
        total = sum(chars.values())
        for t, w in zip(tags, weights):
            assert abs(chars[t] / total - w) < 0.02, (cut, t, chars[t] / total)
    # it ends as soon as one stream runs out: the first stream is exhausted, the others are not
    used = {t: sum(1 for d in docs if d[0] == t) for t in tags}
    assert min(used[t] == 5000 for t in tags) is False and max(used[t] == 5000 for t in tags)


def test_mixture_tagged_and_bad_weights() -> None:
    pairs = list(itertools.islice(mixture_tagged([["xx"] * 10, ["y"] * 10], [1, 1]), 6))
    assert [i for i, _ in pairs] == [0, 1, 1, 0, 1, 1]  # equal characters: one 'xx' per two 'y'
    with pytest.raises(ValueError, match="positive"):
        list(mixture([["a"]], [0]))
    with pytest.raises(ValueError, match="one weight per stream"):
        list(mixture([["a"], ["b"]], [1]))


def test_prose_code_mixture_from_specs(fetched: Path) -> None:
    prose = list(open_source("prose"))
    docs = list(open_source("mix:prose=0.7,code=0.3"))
    prose_chars = sum(len(d) for d in docs if d in set(prose))
    assert 0.6 < prose_chars / sum(map(len, docs)) < 0.8
    assert [d for d in docs if d in set(prose)] == prose  # every prose document once, in order, then it ends
