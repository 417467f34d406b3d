"""Views in headless Chromium: they draw, hover shows values, nothing is requested from the network.

Skipped with the reason when chromium or playwright is missing (scripts/install_browser.sh installs both).
"""

from __future__ import annotations

import pytest
import torch

from mechscope import display

from .helpers import open_offline

pytestmark = pytest.mark.browser


def test_a_notebook_like_page_of_views_draws_offline_with_hover_values(browser, tmp_path):
    views = [display.heatmap(torch.tensor([[0.25, -0.75]]), ["L0"], ["a", "b"], title="hm", value_name="metric"),
             display.line_plot({"test": [0.5, 0.9]}, ["L0", "L1"], title="lines"),
             display.attention(torch.tensor([[[1.0, 0.0], [0.3, 0.7]]]), ["x", "y"], title="attn"),
             display.empty("nothing here", "empty on purpose")]
    # two views in one page, as in a notebook: the bundle is evaluated once and both mount
    page_html = "<html><body>" + "".join(v.html() for v in views) + views[0].html() + "</body></html>"
    page = open_offline(browser, page_html, tmp_path / "page.html", wait_ms=300)
    hosts = page.locator("div.mechscope-view")
    assert hosts.count() == 5
    # shadow roots are pierced by playwright's CSS engine
    cell = page.locator("div.heatmap td").filter(has_text="-0.75").first
    cell.hover()
    tip = page.locator("#tooltip")
    assert "metric = -0.75" in tip.inner_text()
    page.locator("circle.pt").nth(1).hover()
    assert "test · L1: 0.9" in tip.inner_text()
    assert page.locator("div.attn-thumb").count() == 1
    page.locator("div.attn-tokens span.tok").nth(1).hover()
    assert "→" in page.locator("div.attn-tokens span.tok").nth(0).get_attribute("title")
    assert page.locator(".card.empty").filter(has_text="empty on purpose").count() == 1
    page.close()
