"""Head detectors on the built-in SmolLM2-135M."""

import pytest

from mechscope.heads import head_scores

pytestmark = pytest.mark.real


def test_smollm_has_induction_and_previous_token_heads(smollm):
    scores = head_scores(smollm, n=2, seq_len=20)
    best, value = scores.top("induction", 1)[0]
    assert value >= 0.5, scores.top("induction", 5)
    assert scores.classify()[best] == "induction"
    assert scores.top("previous_token", 1)[0][1] >= 0.5
    # Induction needs a previous-token head earlier: the best induction head is not in the first layers.
    assert int(best[1:].split("H")[0]) >= 2
