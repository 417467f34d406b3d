"""A linear probe on the built-in SmolLM2-135M separates capitalised from lower-case word tokens."""

import pytest

from mechscope.probes import ProbeConfig, is_capitalised, probe_layers, token_labels

pytestmark = pytest.mark.real

TEXTS = [
    "The old Lighthouse stood near Boston where many sailors came to rest after long voyages at sea",
    "Maria said that the River flows north through Paris and then turns toward the Ocean",
    "Every Monday the small Bakery on Main Street sells bread to students from Oxford",
    "In winter the Mountains near Denver are covered with snow and quiet villages sleep",
    "Our teacher Robert read a story about Dragons and brave Knights to the young children",
    "Scientists in Tokyo study how the Moon pulls the tides across the Pacific every day",
]


def test_capitalisation_is_linearly_decodable_above_control(smollm):
    labels = token_labels(smollm, TEXTS, is_capitalised)
    res = probe_layers(smollm, TEXTS, labels, kind="resid_post", layers=[0, 4, 8],
                       config=ProbeConfig(max_iter=30, control="shuffle"))
    assert res.baseline < 0.85  # both classes present in useful numbers
    assert float(res.test.max()) > 0.9, res.to_markdown()
    assert float(res.selectivity().max()) > 0.15, res.to_markdown()
