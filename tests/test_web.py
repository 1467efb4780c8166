"""The web page in real headless Chromium (Debian's /usr/bin/chromium; no browser download): type a
query, see results, play a clip from its best segment, follow "more like this"."""

from __future__ import annotations

import os

import pytest
from test_index_collection import build_collection

from soundsearch.cli import main

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    from soundsearch.server import create_app, start_in_thread

    root = tmp_path_factory.mktemp("web")
    build_collection(root / "lib")
    idx = root / "idx"
    assert main(["index", str(root / "lib"), "--index", str(idx), "--workers", "0",
                 "--no-progress"]) == 0  # fmt: skip
    server, url = start_in_thread(create_app(idx))
    yield url
    server.should_exit = True
    server.thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, page_url):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(page_url + "/")
    page.console_errors = errors
    yield page
    context.close()
    assert not errors, errors


def test_search_shows_results_and_plays_a_clip(page):
    page.wait_for_function("document.querySelector('#status').textContent.includes('files')")
    assert "metadata only" in page.text_content("#status")
    page.fill("#q", "breaking glass")
    page.press("#q", "Enter")
    page.wait_for_selector("#results li.result")
    names = page.locator("#results .name").all_text_contents()
    assert len(names) >= 3 and all(n.startswith("default_break_glass") for n in names[:3])
    assert "#q=breaking+glass" in page.url  # the query is in the URL: back/forward, bookmarks
    first = page.locator("#results li.result").first
    assert first.locator(".time").text_content() == "best at 0:00.0"
    assert "sounds" in first.locator(".folder").text_content()
    src = first.locator("audio").get_attribute("src")
    assert src.startswith("/api/audio/") and src.endswith("#t=0.00")
    first.locator("audio").evaluate("a => a.play()")
    page.wait_for_function(
        "() => { const a = document.querySelector('#results audio');"
        " return a.error === null && (a.currentTime > 0.05 || a.ended); }",
        timeout=20000,
    )
    assert first.locator("audio").evaluate("a => a.error") is None


def test_more_like_this(page):
    page.fill("#q", "footsteps on snow")
    page.press("#q", "Enter")
    page.wait_for_selector("#results li.result")
    first_id = page.locator("#results li.result").first.get_attribute("data-id")
    page.locator("#results a.more").first.click()
    page.wait_for_function("document.querySelector('#summary').textContent.includes('sounds like')")
    ids = page.locator("#results li.result").evaluate_all("els => els.map(e => e.dataset.id)")
    assert first_id not in ids and len(ids) > 0
    assert "snow_footstep" in page.locator("#results .name").first.text_content()
    assert "metadata similarity" in page.text_content("#notes")
    assert page.url.endswith(f"#similar={first_id}")


def test_error_is_shown(page):
    page.select_option("#mode", "acoustic")
    page.fill("#q", "glass")
    page.press("#q", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "no acoustic model" in page.text_content("#error")
    assert page.console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]
    page.console_errors.clear()  # the expected one
