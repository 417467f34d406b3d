"""Shared fixtures for the feature tests: a small TopK SAE trained on SmolLM2 activations in the session."""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import mechscope as ms
from mechscope.features import FeatureStats, StatsAccumulator, StatsConfig, token_batches

HOOK = "blocks.8.resid_post"
STDLIB_FILES = ["textwrap.py", "string.py", "shlex.py", "fnmatch.py", "json/decoder.py", "json/encoder.py",
                "calendar.py", "colorsys.py", "bisect.py", "heapq.py"]


def stdlib_texts(n_chars: int = 40_000, piece: int = 700) -> list[str]:
    """Deterministic pieces of Python standard-library source."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((root / f).read_text(encoding="utf-8") for f in STDLIB_FILES if (root / f).exists())
    text = text[:n_chars]
    return [text[i:i + piece] for i in range(0, len(text), piece)]


def _cached_acts(model, batches) -> list[torch.Tensor]:
    """Layer activations per batch; kept under $MECHSCOPE_FEATURES_TEST_CACHE (safetensors) when set, to iterate."""
    import os

    from safetensors.torch import load_file, save_file

    cache_dir = os.environ.get("MECHSCOPE_FEATURES_TEST_CACHE")
    path = Path(cache_dir) / "acts.safetensors" if cache_dir else None
    if path is not None and path.exists():
        stored = load_file(path)
        return [stored[str(i)] for i in range(len(batches))]
    acts = []
    with torch.no_grad():
        for tokens in batches:
            _, cache = model.run_with_cache(tokens, names=[HOOK])
            acts.append(cache[HOOK].contiguous())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({str(i): a for i, a in enumerate(acts)}, path)
    return acts


@dataclass
class Trained:
    model: ms.HookedModel
    sae: ms.dictionaries.Dictionary
    stats: FeatureStats
    texts: list[str]


@pytest.fixture(scope="session")
def smol_sae(smollm) -> Trained:
    """TopK SAE (d_sae 256, k 8) on ~3k tokens of layer-8 residuals, plus its feature statistics."""
    texts = stdlib_texts(10_000)
    batches = list(token_batches(smollm, texts, batch_size=8, max_length=64))
    acts = _cached_acts(smollm, batches)
    masks = []
    for t in batches:  # the first position of a row is an attention sink with outlier norms: left out
        mask = t.attention_mask.bool()
        mask[:, 0] = False
        masks.append(mask)
    rows = torch.cat([a[mk] for a, mk in zip(acts, masks)])  # (N, D)
    torch.manual_seed(0)
    sae = ms.dictionaries.create("topk", d_in=smollm.cfg.d_model, d_sae=256, k=8, hook_name=HOOK,
                                 model_name="smollm2-135m")
    with torch.no_grad():
        sae.b_dec.copy_(rows.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=2e-3)
    for step in range(150):
        batch = rows[torch.randint(0, rows.shape[0], (256,))]
        loss = (sae(batch).reconstruction - batch).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)
    sae.eval()
    acc = StatsAccumulator(sae.d_sae, StatsConfig(top_k=12, reservoir=20, context_left=12, context_right=4))
    with torch.no_grad():
        for tokens, a, mk in zip(batches, acts, masks):
            acc.update(tokens.input_ids, sae.encode(a), mk)
    stats = acc.finish({"model": smollm.cfg.name, "hook_names": [HOOK], "d_sae": sae.d_sae},
                       lambda ids: smollm.tokenizer.decode(ids))
    return Trained(smollm, sae, stats, texts)
