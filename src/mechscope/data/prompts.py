"""Clean / corrupted prompt pairs for circuit analysis: indirect-object identification (IOI) and induction.

Every pair has matched token lengths (names, places and objects are single tokens for the model's tokenizer), so
activations can be patched position by position.

    >>> ioi = ioi_prompts(model, n=8)
    >>> ioi.clean[0]      # 'When Mary and John went to the store, John gave a drink to'
    >>> ioi.corrupted[0]  # 'When Alice and Bob went to the store, Charlie gave a drink to'  (corruption="abc")
    >>> metric = ioi.metric()  # logit(IO) - logit(S) at the last position
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Int
from torch import Tensor

if TYPE_CHECKING:
    from ..metrics import Metric
    from ..models.hooked import HookedModel

NAMES = (" Mary", " John", " Alice", " Bob", " Tom", " James", " Sarah", " David", " Anna", " Michael", " Lisa",
         " Paul", " Emma", " Mark", " Kate", " Peter", " Jane", " Jack", " Laura", " Daniel", " Rachel", " Steve")
PLACES = (" store", " park", " school", " office", " beach", " market", " garden", " station")
OBJECTS = (" drink", " book", " ball", " gift", " letter", " pen", " key", " bag")
TEMPLATES = (
    "When{A} and{B} went to the{PLACE},{S} gave a{OBJ} to",
    "After{A} and{B} arrived at the{PLACE},{S} handed a{OBJ} to",
    "Then,{A} and{B} were working at the{PLACE}.{S} decided to give a{OBJ} to",
)
Corruption = Literal["abc", "swap", "s2_io"]


@dataclass
class IOIPrompts:
    """IOI pairs. ``answer_ids`` = indirect object (IO), ``wrong_ids`` = subject (S), one per prompt.

    ``positions`` maps ``IO``, ``S1``, ``S2`` and ``end`` to token positions shared by every prompt.
    """

    clean: list[str]
    corrupted: list[str]
    answer_ids: Int[Tensor, " batch"]
    wrong_ids: Int[Tensor, " batch"]
    positions: dict[str, int]
    n_tokens: int
    names: list[tuple[str, str]] = field(default_factory=list)

    def metric(self) -> Metric:
        """Logit difference IO minus S at the last position, per prompt."""
        from ..metrics import logit_diff

        return logit_diff(self.answer_ids, self.wrong_ids)


def single_tokens(model: HookedModel, words: Sequence[str]) -> list[str]:
    """The words that are exactly one token for ``model``'s tokenizer."""
    out = []
    for w in words:
        try:
            model.to_single_token(w)
        except ValueError:
            continue
        out.append(w)
    return out


def ioi_prompts(model: HookedModel, n: int = 8, *, template: int = 0, corruption: Corruption = "abc",
                seed: int = 0, prepend_bos: bool | None = None) -> IOIPrompts:
    """``n`` IOI prompt pairs built from one template.

    ``corruption``: ``"abc"`` replaces all three names with three unrelated names (the standard ABC baseline);
    ``"swap"`` exchanges IO and S everywhere (the answer flips); ``"s2_io"`` replaces the second subject mention
    with IO, so only one position differs.
    """
    if not 0 <= template < len(TEMPLATES):
        raise ValueError(f"template must be in 0..{len(TEMPLATES) - 1}, got {template}")
    if corruption not in ("abc", "swap", "s2_io"):
        raise ValueError(f"corruption must be one of 'abc', 'swap', 's2_io', got {corruption!r}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    names, places, objects = (single_tokens(model, NAMES), single_tokens(model, PLACES),
                              single_tokens(model, OBJECTS))
    if len(names) < 5 or not places or not objects:
        raise ValueError(f"this tokenizer has too few single-token names/places/objects ({len(names)} names, "
                         f"{len(places)} places, {len(objects)} objects; need 5, 1, 1)")
    rng = random.Random(seed)
    tpl = TEMPLATES[template]
    clean, corrupted, io_ids, s_ids, pairs = [], [], [], [], []
    for i in range(n):
        io, s, c1, c2, c3 = rng.sample(names, 5)
        place, obj = rng.choice(places), rng.choice(objects)
        a, b = (io, s) if i % 2 == 0 else (s, io)  # alternate the order of first mentions (ABBA / BABA)
        clean.append(tpl.format(A=a, B=b, S=s, PLACE=place, OBJ=obj))
        if corruption == "abc":
            corrupted.append(tpl.format(A=c1, B=c2, S=c3, PLACE=place, OBJ=obj))
        elif corruption == "swap":
            corrupted.append(tpl.format(A=_swap(a, io, s), B=_swap(b, io, s), S=io, PLACE=place, OBJ=obj))
        else:
            corrupted.append(tpl.format(A=a, B=b, S=io, PLACE=place, OBJ=obj))
        io_ids.append(model.to_single_token(io))
        s_ids.append(model.to_single_token(s))
        pairs.append((io, s))
    ct, rt = model.tokenize(clean, prepend_bos), model.tokenize(corrupted, prepend_bos)
    if ct.attention_mask is not None or rt.attention_mask is not None or ct.input_ids.shape != rt.input_ids.shape:
        raise ValueError("IOI prompts did not tokenise to matched lengths; the names, places or objects are not "
                         "single tokens in context for this tokenizer")
    row = ct.input_ids[0].tolist()
    io0, s0 = io_ids[0], s_ids[0]
    s_pos = [i for i, t in enumerate(row) if t == s0]
    positions = {"IO": row.index(io0), "S1": s_pos[0], "S2": s_pos[-1], "end": len(row) - 1}
    return IOIPrompts(clean, corrupted, torch.tensor(io_ids), torch.tensor(s_ids), positions, len(row), pairs)


def _swap(name: str, io: str, s: str) -> str:
    return s if name == io else io if name == s else name


@dataclass
class InductionData:
    """Repeated random tokens: ``tokens[:, prefix + i] == tokens[:, prefix + seq_len + i]``.

    ``corrupted`` has the same first half and a fresh random second half (matched length).
    """

    tokens: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    seq_len: int
    prefix: int


def random_tokens(model: HookedModel, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Random ids avoiding the tokenizer's special tokens."""
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    pool = torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])
    return pool[torch.randint(0, len(pool), shape, generator=generator)]


def induction_tokens(model: HookedModel, n: int = 4, seq_len: int = 20, *, seed: int = 0,
                     prepend_bos: bool | None = None) -> InductionData:
    """``n`` sequences of ``seq_len`` random tokens repeated twice (after a BOS when the model uses one)."""
    if n < 1 or seq_len < 2:
        raise ValueError(f"need n >= 1 and seq_len >= 2, got n={n}, seq_len={seq_len}")
    g = torch.Generator().manual_seed(seed)
    first = random_tokens(model, (n, seq_len), g)
    fresh = random_tokens(model, (n, seq_len), g)
    bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    prefix = torch.empty(n, 0, dtype=torch.long)
    if bos:
        bos_id = model.tokenizer.bos_token_id
        if bos_id is None:
            raise ValueError("prepend_bos=True but the tokenizer has no BOS token")
        prefix = torch.full((n, 1), bos_id, dtype=torch.long)
    tokens = torch.cat([prefix, first, first], 1).to(model.cfg.device)
    corrupted = torch.cat([prefix, first, fresh], 1).to(model.cfg.device)
    return InductionData(tokens, corrupted, seq_len, prefix.shape[1])
