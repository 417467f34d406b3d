"""Every architecture trains through the same loop: loss goes down, outputs load back, dead latents are handled."""

import json

import pytest
import torch

from .helpers import sparse_data

import mechscope as ms
from mechscope.activations import ActivationStore, StoreConfig
from mechscope.training import DeadLatentConfig, DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train

SPECS = {
    "relu": DictionarySpec("relu", hook="a", d_sae=32),
    "topk": DictionarySpec("topk", hook="a", d_sae=32, k=4),
    "batchtopk": DictionarySpec("batchtopk", hook="a", d_sae=32, k=4),
    "jumprelu": DictionarySpec("jumprelu", hook="a", d_sae=32, sparsity_coefficient=0.01),
    "gated": DictionarySpec("gated", hook="a", d_sae=32),
    "transcoder": DictionarySpec("transcoder", hook="a", hook_out="b", d_sae=32),
    "skip_transcoder": DictionarySpec("skip_transcoder", hook="a", hook_out="b", d_sae=32, activation="topk", k=4),
    "crosscoder": DictionarySpec("crosscoder", hook="a,b", d_sae=32),
    "clt": DictionarySpec("clt", hook="a,b", hook_out="b,c", d_sae=16),
}


def _store() -> ActivationStore:
    a = sparse_data()
    b = a @ torch.randn(16, 16, generator=torch.Generator().manual_seed(1)) * 0.3
    c = torch.tanh(b)
    return ActivationStore.from_tensors({"a": a, "b": b, "c": c}, StoreConfig(batch_size=256, buffer_rows=1024))


@pytest.mark.parametrize("arch", list(SPECS))
def test_architecture_trains_and_round_trips(arch: str, tmp_path) -> None:
    spec = SPECS[arch]
    cfg = TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=2),
                      dead=DeadLatentConfig(dead_after_tokens=512, resample_every=10),
                      loop=LoopConfig(steps=40, log_every=1))
    result = train(_store(), spec, cfg, out=tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert last["loss"] < first["loss"], (first["loss"], last["loss"])
    d = result.dictionaries[spec.folder_name()]
    loaded = ms.dictionaries.load(tmp_path / spec.folder_name())
    assert type(loaded).__name__ in (type(d).__name__, "JumpReLUDictionary")
    x = torch.stack([sparse_data()[:8]] * len(spec.hooks_in), 1) if d.W_enc.dim() == 3 else sparse_data()[:8]
    with torch.no_grad():
        assert torch.allclose(loaded(x).reconstruction, d(x).reconstruction, atol=1e-5)
