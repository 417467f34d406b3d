"""The prose corpus: reST cleaning, fortune parsing, building, dedup, manifest checks, the fetch error path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mechscope.data import DataSourceError, prose_corpus, prose_manifest, prose_records
from mechscope.data.corpora import CorpusFetchError, build_prose, fetch_prose, parse_fortunes, prose_dir
from mechscope.data.rest import rest_sections, rest_to_text, section_labels

from .prose_fixture import DEMO_RST, OTHER_RST, PACKAGES, write_prose_tree


def test_rest_markup_becomes_plain_english() -> None:
    text = rest_to_text(DEMO_RST, labels=section_labels(OTHER_RST))
    for gone in ("::", ":func:", ":meth:", ":mod:", ":pep:", "``", "`", "**", "*markup*", "secret", "https://",
                 ":noindex:", ":synopsis:", "This comment", "continuation", "moduleauthor", "[#]_", "|name|"):
        assert gone not in text, gone
    assert not re.search(r"(?m)^\s*([=\-*~^])\1{2,}\s*$", text), "heading adornment left"
    for kept in ("demo --- A Demo", "The demo module shows how markup becomes plain English.",
                 "os.path.join, move_to_end and Counter;", "see the website and PEP 8.",
                 "Values such as None are literals.", "A paragraph introduces an example:", "Usage",
                 "frobnicate\n\nFrobnicate x.  Returns x unchanged when y is None.", "New in version 3.9.",
                 "Changed in version 3.11: The y argument became keyword-only.",
                 "see Another Section Title and demo --- A Demo.", "- first item with glossary term",
                 "- second item spanning two lines", "Last sentence of the demo.", "A footnote with text."):
        assert kept in text, kept


def test_rest_sections_start_at_headings_and_merge_small_ones() -> None:
    each = rest_sections(DEMO_RST, target_chars=1)
    assert [s.split("\n")[0] for s in each] == ["demo --- A Demo", "Usage", "Closing words"]
    assert rest_sections(DEMO_RST, target_chars=10**6) == ["\n\n".join(each)]


def test_fortunes_split_on_percent_lines_keep_attribution() -> None:
    quotes = parse_fortunes("First line\nsecond line\n\t\t-- Author Name\n%\n\n%\nB\x08Bo\x08old  x\n%\n")
    assert quotes == ["First line\nsecond line\n-- Author Name", "Bold x"]


def _built(tmp_path: Path, extra: int = 0) -> Path:
    return build_prose(write_prose_tree(tmp_path / "extract", extra), tmp_path / "prose", packages=PACKAGES)


def test_build_cleans_dedups_skips_and_writes_a_manifest(tmp_path: Path) -> None:
    root = _built(tmp_path)
    records = list(prose_records("all", root=root))
    texts = [r["text"] for r in records]
    assert sum("Repeated" in t for t in texts) == 1  # same quotation, different whitespace and file
    assert not any("secret" in t or "offensive" in t or "o.o" in t for t in texts)  # .dat, off/, ascii-art, code
    assert {r["source"] for r in records} == {"python-doc", "fortunes"}
    assert {r["path"] for r in records if r["source"] == "fortunes"} == {"wisdom", "people"}
    assert any("Short other document about 3.11 features." in t for t in texts)  # |version| from the package
    assert len({r["id"] for r in records}) == len(records)
    m = prose_manifest(root)
    assert m["documents"]["count"] == len(records) and m["documents"]["duplicates_dropped"] == 1
    assert [p["name"] for p in m["packages"]] == ["python3.11-doc", "fortunes"]
    assert "python-doc/library/demo.rst.txt" in m["raw_files"] and "fortunes/wisdom.u8" not in m["raw_files"]
    assert "licences/fortunes.copyright" in m["raw_files"]
    again = build_prose(tmp_path / "extract", tmp_path / "prose2", packages=PACKAGES)
    assert (again / "documents.jsonl").read_bytes() == (root / "documents.jsonl").read_bytes()


def test_prose_splits_are_disjoint_complete_and_stable(tmp_path: Path) -> None:
    root = _built(tmp_path, extra=400)
    train, held, every = (list(prose_corpus(s, root=root)) for s in ("train", "heldout", "all"))
    assert set(train).isdisjoint(held) and sorted(train + held) == sorted(every)
    assert 0.02 < len(held) / len(every) < 0.09
    assert list(prose_corpus("heldout", root=root)) == held and list(prose_corpus(root=root)) == train
    only = list(prose_corpus("all", root=root, source="fortunes"))
    assert len(only) == len(every) - sum(1 for r in prose_records("all", root=root) if r["source"] == "python-doc")
    with pytest.raises(ValueError, match="valid splits: train, heldout, all"):
        prose_corpus("test", root=root)


def test_missing_tampered_and_stale_corpora(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="mechscope data fetch prose"):
        prose_corpus(root=tmp_path / "nothing")
    root = _built(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format_version"] = 0  # built by an older cleaner: rebuilt from raw/ on first read
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert list(prose_corpus("all", root=root))
    assert prose_manifest(root)["format_version"] > 0
    with (root / "documents.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "x", "source": "fortunes", "path": "p", "text": "injected"}) + "\n")
    with pytest.raises(DataSourceError, match="does not match its manifest.*--force"):
        prose_corpus(root=root)


def test_fetch_without_apt_says_how_to_provide_text(monkeypatch, tmp_path: Path) -> None:
    import mechscope.data.corpora as corpora

    monkeypatch.setattr(corpora.shutil, "which", lambda tool: None)
    with pytest.raises(CorpusFetchError, match=r"apt-get.*--source code.*--source path/to/folder.*hf:"):
        fetch_prose(out=tmp_path / "prose")
    assert not (tmp_path / "prose").exists()


def test_fetch_reuses_a_built_corpus(monkeypatch, tmp_path: Path) -> None:
    import mechscope.data.corpora as corpora

    root = _built(tmp_path)
    monkeypatch.setattr(corpora, "_download", lambda *a: pytest.fail("downloaded although cached"))
    assert fetch_prose(out=root) == root


def test_cli_fetch_error_is_one_clear_line(monkeypatch, tmp_path: Path, capsys) -> None:
    import mechscope.data.corpora as corpora
    from mechscope.cli.main import main

    monkeypatch.setenv("MECHSCOPE_HOME", str(tmp_path))
    monkeypatch.setattr(corpora.shutil, "which", lambda tool: None)
    assert main(["data", "fetch", "prose"]) == 2
    err = capsys.readouterr().err
    assert "mechscope data: error: fetching the prose corpus needs Debian's `apt-get`" in err
    assert main(["data", "fetch", "code"]) == 2
    assert main(["data", "list"]) == 0
    assert "prose: not available" in capsys.readouterr().out


@pytest.mark.real
def test_real_prose_corpus_is_large_and_clean() -> None:
    try:
        m = prose_manifest()
    except DataSourceError:
        pytest.skip(f"prose corpus not fetched at {prose_dir()} (mechscope data fetch prose)")
    # SmolLM2 reads these texts at about 4 characters per token: 5 M characters is over a million tokens
    assert m["documents"]["chars"] > 5_000_000
    assert {p["name"] for p in m["packages"]} >= {"fortunes", "fortunes-min"}
    assert m["documents"]["by_source"]["fortunes"]["documents"] > 10_000
    docs = "\n".join(prose_corpus("all", source="python-doc"))
    assert not re.search(r":(func|meth|class|mod|ref|term):`|``|^\.\. |^\s*(\.\. )?code-block::", docs, re.M)
