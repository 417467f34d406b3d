"""An attention-only transformer trained on a synthetic induction task: ground truth for circuit discovery.

Each sequence is uniformly random tokens in which a segment of random length (6-12) at a random offset is repeated
right after itself (``... A B C A B C ...``); the model is trained to predict the second copy. Two attention
layers solve it with the textbook circuit: a *previous-token head* in layer 0 writes "the token before me was X"
into each position, and an *induction head* in layer 1 matches the current token against that information
(K-composition) and copies the attended token to the output.

The model is a Hugging Face Llama (``LlamaForCausalLM``: rotary positions, so there is no absolute-position shortcut)
whose MLPs are fixed at zero (every MLP weight zero and frozen), so it runs through
:class:`~mechscope.models.hooked.HookedModel`, the hook points and ACDC unchanged. Training takes well under a
minute on a CPU and is reproducible from the seed; the trained weights are cached (safetensors) under
``$MECHSCOPE_HOME/toy/induction-<key>`` (default ``~/.cache/mechscope``), not in git.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import trange

from ..files import atomic_folder
from ..heads.detectors import diagonal_score, pairs_score
from ..metrics import kl_divergence
from ..models.hooked import HookedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InductionConfig:
    """The toy model and its training."""

    d_vocab: int = 48
    """Vocabulary size (random tokens are drawn from all of it)."""
    d_model: int = 64
    """Residual width."""
    n_heads: int = 4
    """Heads per layer."""
    n_layers: int = 2
    """Attention layers."""
    seq_len: int = 24
    """Tokens per sequence."""
    min_rep_len: int = 6
    """Shortest repeated segment."""
    max_rep_len: int = 12
    """Longest repeated segment (2 * max_rep_len <= seq_len)."""
    steps: int = 1000
    """Adam steps."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """Learning rate."""
    seed: int = 0
    """Seed of the initialisation and of the data."""

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def induction_batch(cfg: InductionConfig, batch: int, generator: torch.Generator | None = None,
                    repeat: bool = True) -> tuple[Int[Tensor, "batch seq"], Bool[Tensor, "batch seq"]]:
    """Random tokens with one random segment repeated right after itself, at a random length and offset.

    Returns ``(tokens, mask)``; ``mask[b, q]`` marks the positions whose next token is predictable by induction
    (inside the second copy). With ``repeat=False`` the "copy" is fresh random tokens (the same mask): the
    corrupted inputs for ablations. Varying length and offset rule out a positional shortcut.
    """
    S = cfg.seq_len
    tokens = torch.randint(0, cfg.d_vocab, (batch, S), generator=generator)
    fresh = torch.randint(0, cfg.d_vocab, (batch, S), generator=generator)
    n = torch.randint(cfg.min_rep_len, cfg.max_rep_len + 1, (batch,), generator=generator)
    start = (torch.rand(batch, generator=generator) * (S - 2 * n + 1).float()).long()
    mask = torch.zeros(batch, S, dtype=torch.bool)
    for b in range(batch):
        p, k = int(start[b]), int(n[b])
        tokens[b, p + k: p + 2 * k] = tokens[b, p: p + k] if repeat else fresh[b, p + k: p + 2 * k]
        mask[b, p + k: p + 2 * k - 1] = True
    return tokens, mask


def induction_loss(logits: Float[Tensor, "batch seq vocab"], tokens: Int[Tensor, "batch seq"],
                   mask: Bool[Tensor, "batch seq"]) -> Tensor:
    """Mean next-token cross-entropy at the induction positions."""
    lp = logits[:, :-1].log_softmax(-1)  # (B, S-1, V)
    nll = -lp.gather(-1, tokens[:, 1:, None])[..., 0]  # (B, S-1)
    m = mask[:, :-1].float()
    return (nll * m).sum() / m.sum()


def _hf_config(cfg: InductionConfig) -> transformers.LlamaConfig:
    c = transformers.LlamaConfig(vocab_size=cfg.d_vocab, hidden_size=cfg.d_model, intermediate_size=4,
                                 num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                                 num_key_value_heads=cfg.n_heads, max_position_embeddings=cfg.seq_len,
                                 tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    c._attn_implementation = "eager"
    return c


def _zero_mlps(model: transformers.LlamaForCausalLM) -> None:
    for block in model.model.layers:
        for p in block.mlp.parameters():
            with torch.no_grad():
                p.zero_()
            p.requires_grad_(False)


def train_induction(cfg: InductionConfig) -> transformers.LlamaForCausalLM:
    """Train the toy model from scratch (seeded); returns the HF model in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and fair to a shared machine
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: InductionConfig) -> transformers.LlamaForCausalLM:
    torch.manual_seed(cfg.seed)
    model = transformers.LlamaForCausalLM(_hf_config(cfg))
    _zero_mlps(model)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.01)
    model.train()
    for step in trange(cfg.steps, desc="induction toy", leave=False):
        tokens, mask = induction_batch(cfg, cfg.batch_size, gen)
        loss = induction_loss(model(tokens).logits, tokens, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            log.info("step %d: induction loss %.3f", step, float(loss.detach()))
    return model.eval()


def cache_dir(cfg: InductionConfig) -> Path:
    root = Path(os.environ.get("MECHSCOPE_HOME", Path.home() / ".cache" / "mechscope"))
    return root / "toy" / f"induction-{cfg.key()}"


def load_induction_model(cfg: InductionConfig | None = None, retrain: bool = False) -> HookedModel:
    """The trained toy model as a :class:`HookedModel` (trained once per config, then loaded from the cache)."""
    cfg = cfg or InductionConfig()
    folder = cache_dir(cfg)
    if retrain or not (folder / "model.safetensors").is_file():
        model = train_induction(cfg)
        with atomic_folder(folder) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            (tmp / "induction.json").write_text(json.dumps(asdict(cfg)))
    hf = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                      attn_implementation="eager").eval()
    return HookedModel(hf, None, name=f"toy-induction-{cfg.key()}")


@torch.no_grad()
def head_scores(model: HookedModel, cfg: InductionConfig, batch: int = 32) -> dict[str, Tensor]:
    """Previous-token and induction scores (mean attention on the expected key) per (layer, head)."""
    tokens, mask = induction_batch(cfg, batch, torch.Generator().manual_seed(123))
    names = [f"blocks.{l}.attn.pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names=names)
    n = (mask.sum(1) + 1)  # segment length per sequence
    prev, ind = [], []
    b, q = mask.nonzero(as_tuple=True)
    for name in names:
        p = cache[name]  # (B, H, T, T)
        prev.append(diagonal_score(p, 1, range(1, tokens.shape[1])))
        ind.append(pairs_score(p, b, q, q - n[b] + 1))
    return {"previous_token": torch.stack(prev), "induction": torch.stack(ind)}


@torch.no_grad()
def acdc_task(model: HookedModel, cfg: InductionConfig, n: int = 32, seed: int = 0):
    """Clean / corrupted sequences and the ACDC loss for the induction task.

    Corrupted sequences equal the clean ones except that the second copy is fresh random tokens (nothing to
    induct from). The loss is KL(full model || circuit) averaged over the induction positions.
    Returns ``(clean, corrupt, loss_fn)``.
    """
    gen = torch.Generator().manual_seed(seed)
    clean, mask = induction_batch(cfg, n, gen)
    fresh = torch.randint(0, cfg.d_vocab, clean.shape, generator=gen)
    second = mask | mask.roll(1, 1)  # the whole second copy
    corrupt = torch.where(second, fresh, clean)
    full = model(clean).float().log_softmax(-1)  # (B, S, V)
    m = mask.float()

    def loss_fn(logits: Tensor) -> float:
        lq = logits.float().log_softmax(-1)
        kl = kl_divergence(full, lq)  # (B, S)
        return float((kl * m).sum() / m.sum())

    return clean, corrupt, loss_fn
