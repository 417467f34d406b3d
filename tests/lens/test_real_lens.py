"""Logit lens and direct logit attribution on the built-in SmolLM2-135M."""

import pytest
import torch

from mechscope.data.prompts import ioi_prompts
from mechscope.lens import direct_logit_attribution, logit_lens

pytestmark = pytest.mark.real


def test_logit_lens_converges_to_the_output(smollm):
    lens = logit_lens(smollm, "The capital of France is Paris, and the capital of Germany is")
    kl = lens.mean_kl()
    n = smollm.cfg.n_layers
    assert float(kl[-1]) < 1e-6
    # Early and middle layers decode poorly (the logit lens is not a tuned lens); the last layers converge.
    assert float(kl[n - 1]) < 0.2 * float(kl[: n // 2].median())
    assert (kl[n - 6:].diff() < 0).all(), kl
    ranks = lens.rank(" Berlin")
    assert int(ranks[-1]) == 0 and int(ranks[n - 1]) < 20 and int(ranks[1]) > 100, ranks


def test_ioi_logit_difference_is_written_by_late_components(smollm):
    ioi = ioi_prompts(smollm, n=2)
    dla = direct_logit_attribution(smollm, ioi.clean, ioi.answer_ids, ioi.wrong_ids)
    torch.testing.assert_close(dla.values.sum(0) + dla.bias, dla.total, atol=1e-3, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(dla.total, ioi.metric()(smollm(ioi.clean)), atol=1e-3, rtol=1e-4)
    top_label, top_value = dla.top(1)[0]
    assert top_value > 0 and int(top_label[1:].split("H")[0].split("_")[0]) >= 15, dla.top(5)
