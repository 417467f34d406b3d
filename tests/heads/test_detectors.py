"""Head detectors: exact scores on constructed patterns, through a real model's hooks and on random models."""

import pytest
import torch

from mechscope.data.prompts import induction_tokens
from mechscope.heads import head_scores, scores_from_pattern
from mechscope.models.hook_points import HookNameError


def shifted(t: int, offsets: dict[int, int], heads: int = 3) -> torch.Tensor:
    """A (1, heads, t, t) pattern; head h attends from i to i - offsets[h] (or to position 0 before that)."""
    p = torch.zeros(1, heads, t, t)
    for h in range(heads):
        off = offsets.get(h)
        for i in range(t):
            j = i - off if off is not None and i - off >= 0 else 0
            p[0, h, i, j] = 1.0
    return p


def test_scores_on_constructed_patterns():
    from tiny import hooked

    data = induction_tokens(hooked("llama"), n=1, seq_len=6)
    t = data.tokens.shape[1]
    n = data.seq_len
    s = scores_from_pattern(shifted(t, {0: 1, 1: n - 1, 2: n}), data)
    torch.testing.assert_close(s["previous_token"][0], torch.tensor(1.0))
    torch.testing.assert_close(s["induction"][1], torch.tensor(1.0))
    torch.testing.assert_close(s["duplicate_token"][2], torch.tensor(1.0))
    assert float(s["induction"][0]) == 0.0 and float(s["duplicate_token"][1]) == 0.0
    # Head 1 sends query 1 to position 0, which is also its previous token: 1 of 2n - 1 queries.
    torch.testing.assert_close(s["previous_token"][1], torch.tensor(1 / (2 * n - 1)))
    # Head 1 attends to position 0 until its offset is reachable: n - 1 of the 2n - 1 scored queries.
    torch.testing.assert_close(s["attention_sink"][1], torch.tensor((n - 1) / (2 * n - 1)))


def test_detect_an_induction_pattern_through_hooks():
    """Replace one head's pattern with an exact induction pattern: the detector must find that head."""
    from tiny import hooked

    model = hooked("llama")
    data = induction_tokens(model, n=2, seq_len=8)
    t, n = data.tokens.shape[1], data.seq_len
    target = shifted(t, {0: n - 1}, heads=1)[0, 0]

    def plant(act, hook):
        out = act.clone()
        out[:, 2] = target
        return out

    with model.hooks([("blocks.1.attn.pattern", plant)]):
        scores = head_scores(model, data)
    assert scores.scores["induction"].shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert scores.top("induction", 1)[0] == ("L1H2", pytest.approx(1.0))
    assert scores.classify()["L1H2"] == "induction"
    assert float(scores.scores["induction"].flatten().sort().values[-2]) < 0.5  # a random model has no other
    assert "| L1H2 |" in scores.to_markdown(min_score=0.9)


def test_scores_are_attention_shares(tiny):
    if "attn.pattern" not in tiny.namespace.block_kinds:  # ALiBi Falcon (see its adapter): a clear refusal
        with pytest.raises(HookNameError, match="'blocks.0.attn.pattern' does not exist for this architecture"):
            head_scores(tiny, n=2, seq_len=6)
        return
    scores = head_scores(tiny, n=2, seq_len=6)
    for kind, s in scores.scores.items():
        assert s.shape == (tiny.cfg.n_layers, tiny.cfg.n_heads)
        assert (s >= 0).all() and (s <= 1 + 1e-5).all(), kind
    fig = scores.table("previous_token").plot()
    assert fig.axes
    with pytest.raises(KeyError, match="valid: previous_token"):
        scores.table("induktion")
