"""Text sources and packing: formats, deterministic stdlib corpus, BOS handling, special-token masks."""

import json
from pathlib import Path

import pytest
import torch

from mechscope.data import (DataSourceError, PackConfig, batched, local_files, open_source, pack, rank_slice,
                            special_ids, stdlib_corpus, stdlib_files, train_mask)
from tiny import byte_tokenizer

BOS, EOS = 256, 257


def test_pack_exact_lengths_bos_and_separators() -> None:
    tok = byte_tokenizer()
    docs = ["abc", "defgh", "ij"]
    ctx = list(pack(docs, tok, PackConfig(context_size=4)))
    # stream: a b c EOS d e f g h EOS i j EOS -> bodies of 3 after BOS; the last partial body is dropped
    assert all(c.shape == (4,) and c[0] == BOS for c in ctx)
    bodies = torch.cat([c[1:] for c in ctx]).tolist()
    ids = {d: tok(d, add_special_tokens=False)["input_ids"] for d in docs}
    expected = ids["abc"] + [EOS] + ids["defgh"] + [EOS] + ids["ij"]
    assert bodies == expected[:len(bodies)] and len(bodies) == 12
    no_bos = list(pack(docs, tok, PackConfig(context_size=4, prepend_bos=False, separator="none")))
    assert torch.cat(no_bos).tolist() == (ids["abc"] + ids["defgh"] + ids["ij"])[:8]


def test_train_mask_excludes_special_tokens() -> None:
    tok = byte_tokenizer()
    assert special_ids(tok) == [256, 257, 258, 259]
    ids = torch.tensor([[BOS, 97, EOS, 98]])
    assert train_mask(ids, special_ids(tok)).tolist() == [[False, True, False, True]]
    assert train_mask(ids).all()


def test_batched_and_rank_slices_partition_the_data() -> None:
    items = list(range(10))
    assert sorted(list(rank_slice(items, 0, 3)) + list(rank_slice(items, 1, 3)) + list(rank_slice(items, 2, 3))) == items
    with pytest.raises(ValueError):
        list(rank_slice(items, 3, 3))
    shapes = [b.shape for b in batched([torch.zeros(4)] * 5, 2)]
    assert shapes == [(2, 4), (2, 4), (1, 4)]


def test_local_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    assert list(local_files(tmp_path)) == ["plain text", "one", "two"]
    assert list(open_source(str(tmp_path / "b.jsonl"), max_docs=1)) == ["one"]
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataSourceError, match="no field 'text'.*body"):
        list(local_files(tmp_path / "c.jsonl"))
    with pytest.raises(DataSourceError, match="no such file"):
        list(local_files(tmp_path / "missing.txt"))
    (tmp_path / "d.csv").write_text("x")
    with pytest.raises(DataSourceError, match="unknown format"):
        list(local_files(tmp_path / "d.csv"))


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["p1", "p2"], "n": [1, 2]}), tmp_path / "t.parquet")
    assert list(local_files(tmp_path / "t.parquet")) == ["p1", "p2"]
    with pytest.raises(DataSourceError, match="no column 'body'"):
        list(local_files(tmp_path / "t.parquet", field="body"))


def test_stdlib_corpus_is_deterministic_and_large() -> None:
    files = stdlib_files()
    assert len(files) > 500
    assert not any("site-packages" in p.parts for p in files)
    first = list(stdlib_corpus(max_docs=3))
    assert first == list(stdlib_corpus(max_docs=3)) and all(isinstance(d, str) and d for d in first)


def test_stdlib_corpus_on_a_fake_root(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text('"""doc b"""\n')
    (tmp_path / "a.py").write_text("# comment a\n")
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "z.py").write_text("x = 1\n")
    assert list(stdlib_corpus(tmp_path)) == ["# comment a\n", '"""doc b"""\n']


def test_hf_spec_parsing(monkeypatch) -> None:
    import mechscope.data.sources as sources

    calls = []

    def fake(path, name=None, *, split="train", field="text", streaming=True):
        calls.append((path, name, split, field))
        yield from ["d1", "d2", "d3"]

    monkeypatch.setattr(sources, "hf_dataset", fake)
    assert list(open_source("hf:owner/name:cfg@validation", field="content", max_docs=2)) == ["d1", "d2"]
    assert calls == [("owner/name", "cfg", "validation", "content")]
    list(open_source("hf:owner/plain"))
    assert calls[-1] == ("owner/plain", None, "train", "text")


def test_hf_without_datasets_package_says_what_to_install(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    from mechscope.data.sources import hf_dataset

    with pytest.raises(DataSourceError, match="pip install datasets"):
        next(hf_dataset("owner/name"))
