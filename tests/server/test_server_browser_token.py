"""The web UI of a token-guarded server works from the printed address (``/?token=...``) in headless Chromium, and
says what is missing without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import LiveServer
from .test_server_browser import CHROMIUM, FLAGS

pytestmark = [pytest.mark.browser]
TOKEN = "browser-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    from mechscope.server import ServeConfig, create_app
    from tiny import hooked

    root = tmp_path_factory.mktemp("runs")
    run = root / "demo"
    run.mkdir()
    (run / "eval.json").write_text('{"explained_variance": 0.5}')
    (run / "report.html").write_text("<html><body><p id='x'>report body</p></body></html>")
    model = hooked("llama")
    cfg = ServeConfig(runs=str(root), host="0.0.0.0", allow_remote=True, token=TOKEN)
    srv = LiveServer(create_app(cfg, load_model=lambda: model))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_page_opened_with_the_token_works(server, browser):
    page = browser.new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}/?token={TOKEN}#/runs")
    page.wait_for_selector("a[href='#/run/demo']")
    page.click("a[href='#/run/demo']")
    page.wait_for_selector("h1:has-text('Run demo')")
    assert "explained_variance" in page.inner_text("main")
    page.goto(f"{server.url}/#/lens")  # the token stays with the tab after navigating away from ?token=
    page.fill("#lens-prompt", "abc")
    page.click("#lens-run")
    page.wait_for_selector("#lens-output table")
    status = page.evaluate("fetch('/api/runs/demo/files/report.html').then(r => r.status)")  # frames: cookie
    assert status == 200
    assert not errors, errors
    page.close()


def test_page_without_the_token_says_so(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{server.url}/#/runs")
    page.wait_for_selector(".error")
    assert "token" in page.inner_text(".error")
    context.close()
