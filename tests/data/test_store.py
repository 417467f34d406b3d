"""Activation store: harvest in one pass, mixing buffer, shards with checksums, resuming a half-written cache."""

import itertools
from pathlib import Path

import pytest
import torch

from mechscope.activations import (ActivationStore, Manifest, MixingBuffer, ShardChecksumError, ShardError,
                                   StoreConfig, harvest, harvest_to_disk, read_shards, verify)
from tiny import hooked

HOOKS = ["blocks.0.resid_post", "blocks.1.mlp_out"]


def contexts(n: int = 12):
    g = torch.Generator().manual_seed(0)
    return [torch.cat([torch.tensor([256]), torch.randint(0, 256, (7,), generator=g)]) for _ in range(n)]


def test_harvest_matches_run_with_cache_and_drops_bos() -> None:
    model = hooked("llama")
    ctx = contexts(4)
    (n, chunk), = list(harvest(model, ctx, HOOKS, model_batch=4, exclude=[256]))
    _, cache = model.run_with_cache(torch.stack(ctx), names=HOOKS)
    assert n == 4
    for h in HOOKS:
        assert chunk[h].shape == (4 * 7, 32)
        assert torch.equal(chunk[h], cache[h][:, 1:].reshape(-1, 32))


def test_mixing_buffer_is_a_seeded_permutation() -> None:
    rows = torch.arange(100.0)[:, None]
    chunks = [{"a": rows[i:i + 10]} for i in range(0, 100, 10)]
    out = list(MixingBuffer(40, 8, seed=1)(chunks))
    got = torch.cat([b["a"] for b in out]).flatten()
    assert all(b["a"].shape == (8, 1) for b in out) and len(got) == 96
    assert len(set(got.tolist())) == 96 and not torch.equal(got, torch.arange(96.0))
    again = torch.cat([b["a"] for b in MixingBuffer(40, 8, seed=1)(chunks)]).flatten()
    assert torch.equal(got, again)
    ordered = torch.cat([b["a"] for b in MixingBuffer(40, 8, shuffle=False)(chunks)]).flatten()
    assert torch.equal(ordered, torch.arange(96.0))


def test_shards_round_trip_resume_and_checksums(tmp_path: Path) -> None:
    model = hooked("llama")
    cfg = StoreConfig(batch_size=16, buffer_rows=64, model_batch=2)
    full = harvest_to_disk(model, lambda: contexts(), HOOKS, tmp_path / "full", contexts_per_shard=4, cfg=cfg)
    assert full.complete and len(full.shards) == 3 and full.tokens == 12 * 7
    # a harvest killed after the first shard: resuming writes only the missing shards
    part = harvest_to_disk(model, lambda: contexts(), HOOKS, tmp_path / "part", contexts_per_shard=4, cfg=cfg,
                           max_contexts=4)
    assert len(part.shards) == 1
    m = Manifest.read(tmp_path / "part")
    m.complete = False
    (tmp_path / "part" / "manifest.json").write_text(m.to_json())
    first_mtime = (tmp_path / "part" / "shard_00000.safetensors").stat().st_mtime_ns
    resumed = harvest_to_disk(model, lambda: contexts(), HOOKS, tmp_path / "part", contexts_per_shard=4, cfg=cfg)
    assert (tmp_path / "part" / "shard_00000.safetensors").stat().st_mtime_ns == first_mtime
    assert [s.sha256 for s in resumed.shards] == [s.sha256 for s in full.shards]
    for a, b in zip(read_shards(tmp_path / "full"), read_shards(tmp_path / "part")):
        assert all(torch.equal(a[h], b[h]) for h in HOOKS)
    # a flipped byte is caught
    shard = tmp_path / "full" / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardChecksumError, match="shard_00001"):
        verify(tmp_path / "full")
    with pytest.raises(ShardChecksumError):
        list(read_shards(tmp_path / "full"))
    # different settings on an existing cache are refused
    with pytest.raises(ShardError, match="contexts_per_shard"):
        harvest_to_disk(model, lambda: contexts(), HOOKS, tmp_path / "part", contexts_per_shard=5, cfg=cfg)


def test_store_from_shards_and_from_model_agree(tmp_path: Path) -> None:
    model = hooked("llama")
    cfg = StoreConfig(batch_size=16, buffer_rows=32, model_batch=2, seed=5)
    harvest_to_disk(model, lambda: contexts(), HOOKS, tmp_path / "c", contexts_per_shard=2, cfg=cfg)
    live = list(ActivationStore.from_model(model, lambda: contexts(), HOOKS, cfg).batches())
    disk = list(ActivationStore.from_shards(tmp_path / "c", cfg).batches())
    assert len(live) == len(disk) == 12 * 7 // 16
    for a, b in zip(live, disk):
        assert all(torch.allclose(a[h], b[h]) for h in HOOKS)


def test_from_tensors_cycles_and_slices_by_rank() -> None:
    x = torch.arange(40.0)[:, None]
    cfg = StoreConfig(batch_size=4, buffer_rows=8, shuffle=False)
    b0 = list(itertools.islice(ActivationStore.from_tensors({"x": x}, cfg, rank=0, world_size=2).batches(), 6))
    assert torch.cat([b["x"] for b in b0[:5]]).flatten().tolist() == list(range(0, 40, 2))
    assert b0[5]["x"].flatten().tolist() == [0, 2, 4, 6]  # second epoch


def test_store_config_validation() -> None:
    with pytest.raises(ValueError, match="buffer_rows"):
        StoreConfig(batch_size=64, buffer_rows=32)
    with pytest.raises(ValueError, match="dtype"):
        StoreConfig(dtype="int8")
