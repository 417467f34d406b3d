"""The web UI in headless Chromium (Debian's chromium driven by Playwright) against a real server.

Screenshots go to ``test-artifacts/server/`` (git-ignored). Skipped with the reason when chromium or playwright is
missing: ``scripts/install_browser.sh .venv`` installs both.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MECHSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "server"

pytestmark = [pytest.mark.browser, pytest.mark.real]


@pytest.fixture(scope="module")
def page(live_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(scripts/install_browser.sh VENV installs it)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (scripts/install_browser.sh installs Debian's chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(600_000)  # only a guard against hanging: CPU-shared machines vary widely
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
        pg.base = live_server.url
        yield pg
        browser.close()


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_run_browser(page):
    page.goto(page.base + "/")
    page.wait_for_selector("a[href='#/run/demo']")
    shot(page, "01-runs")
    page.click("a[href='#/run/demo']")
    page.wait_for_selector("h1:has-text('Run demo')")
    text = page.inner_text("main")
    assert "sae/features.db" in text and "graph.json" in text and "explained_variance" in text
    shot(page, "02-run")


def test_feature_search_and_dashboard(page):
    page.goto(page.base + "/#/features/demo")
    page.wait_for_selector("#feature-hits li[data-feature]")
    page.fill("#feature-query", "capital")
    page.click("#feature-search")
    page.wait_for_selector("#feature-hits li[data-feature]:has-text('capital')")
    first = page.locator("#feature-hits li[data-feature]").first
    fid = first.get_attribute("data-feature")
    first.click()
    page.wait_for_selector("#feature-card")
    assert f"Feature {fid}" in page.inner_text("#feature-card")
    assert page.locator("#feature-card .example").count() > 0
    frame = page.frame_locator("#dashboard")
    frame.locator("body").wait_for()
    assert fid in frame.locator("body").inner_text()
    shot(page, "03-features")


def test_graph_click_node(page):
    page.goto(page.base + "/#/graph/demo")
    page.wait_for_selector("svg.graph circle.node")
    assert page.locator("svg.graph path.link").count() == 6
    page.locator("svg.graph circle.node").first.click()
    page.wait_for_selector("#node-panel #feature-card")
    assert "Feature" in page.inner_text("#node-panel")
    page.locator("svg.graph path.link").first.dispatch_event("mousemove")  # (nodes may cover a link's centre)
    assert "weight" in page.inner_text("#tooltip")
    page.fill("#threshold", "50")  # prune: keep links with |w| >= half the largest
    assert "of 6 links" in page.inner_text("#link-count")
    visible = page.locator("svg.graph path.link:visible").count()
    assert 0 < visible < 6
    shot(page, "04-graph")


def test_steering(page):
    page.goto(page.base + "/#/steer/demo?feature=3&strength=5")
    page.wait_for_selector("#steer-run")
    page.fill("#steer-prompt", "The cat")
    page.fill("#steer-tokens", "4")
    page.click("#steer-run")
    page.wait_for_selector("#steer-steered")
    assert page.inner_text("#steer-baseline").startswith("The cat")
    assert page.inner_text("#steer-steered").startswith("The cat")
    shot(page, "05-steering")


def test_lens_heatmap_and_docs(page):
    page.goto(page.base + "/#/lens")
    page.fill("#lens-prompt", "The capital of France is")
    page.click("#lens-run")
    page.wait_for_selector("#lens-output table")
    assert page.locator("#lens-output tbody tr").count() == 31
    page.fill("#patch-clean", "Mary gave it to")
    page.fill("#patch-corrupted", "John gave it to")
    page.fill("#patch-answer", " John")
    page.fill("#patch-wrong", " Mary")
    page.fill("#patch-step", "8")
    page.click("#patch-run")
    page.wait_for_selector("#patch-output table")
    shot(page, "06-lens-patching")
    page.goto(page.base + "/docs")
    page.wait_for_selector("h2:has-text('/api/steer')")
    shot(page, "07-docs")
    assert not page.errors, page.errors
