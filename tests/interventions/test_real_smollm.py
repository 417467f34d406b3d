"""Causal analysis on the built-in SmolLM2-135M: IOI behaviour, localisation by patching, attribution patching."""

import pytest
import torch

from mechscope.data.prompts import ioi_prompts
from mechscope.interventions import attribution_check, patch_resid

pytestmark = pytest.mark.real


def test_ioi_prompts_prefer_the_indirect_object(smollm):
    ioi = ioi_prompts(smollm, n=8)
    with torch.no_grad():
        ld = ioi.metric()(smollm(ioi.clean))
    assert ld.shape == (8,)
    assert float(ld.mean()) > 1.0, ld
    assert float((ld > 0).float().mean()) >= 0.75, ld


@pytest.fixture(scope="module")
def s2_sweep(smollm):
    """Corrupt only the second subject mention (S2 := IO): the answer flips, one position differs."""
    ioi = ioi_prompts(smollm, n=2, corruption="s2_io")
    return ioi, patch_resid(smollm, ioi.clean, ioi.corrupted, ioi.metric(), layers=range(0, 30, 3))


def test_resid_sweep_localises_to_the_name_then_the_last_position(s2_sweep):
    ioi, res = s2_sweep
    pos = ioi.positions
    assert res.clean > 1.0 and res.corrupted < -1.0
    norm = res.normalized()  # (10 layers, T)
    # Before S2 nothing differs between the runs: patching there is exactly a no-op.
    assert float(norm[:, : pos["S2"]].abs().max()) < 1e-4
    # Early and middle layers: the whole effect sits on the corrupted name's position.
    early = [i for i, lab in enumerate(res.row_labels) if int(lab[1:]) <= 12]
    assert (norm[early, pos["S2"]] > 0.9).all(), norm[early]
    # Late layers: it has moved to the final position, where the answer is read out.
    assert float(norm[-1, pos["end"]]) > 0.8 and float(norm[-1, pos["S2"]]) < 0.2, norm[-1]
    # Positions between S2 and the end never carry much.
    assert float(norm[:, pos["S2"] + 1: pos["end"]].abs().max()) < 0.25


def test_attribution_patching_tracks_real_patching(smollm, record_property):
    ioi = ioi_prompts(smollm, n=2, corruption="abc")
    check = attribution_check(smollm, ioi.clean, ioi.corrupted, ioi.metric(), kind="attn_out",
                              layers=range(0, 30, 3))
    record_property("attribution_correlation_attn_out", check.correlation)
    assert check.correlation >= 0.7, check.correlation
