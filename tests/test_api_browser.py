"""The web UI in real Chromium: log in, search, open a report, refer it, see the state change;
and the browser loads nothing but our own pages (no media, no scripts)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from .api_helpers import seeded_api

pytestmark = pytest.mark.browser
BROWSER = os.environ.get("HOTLINE_BROWSER", "/usr/bin/chromium")


@pytest.fixture
def ui(hotline_env: dict, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    if not os.access(BROWSER, os.X_OK):
        pytest.skip(f"no Chromium at {BROWSER} (`make test` installs it)")
    with seeded_api(monkeypatch, redis_url) as (server, seeded, _):
        yield server, seeded


def test_analyst_searches_opens_and_refers_a_report(ui: tuple) -> None:
    server, seeded = ui
    requested: list[tuple[str, str]] = []
    with sync_playwright() as p:
        # The sandbox needs a non-root user; this browser only opens our UI on loopback.
        browser = p.chromium.launch(executable_path=BROWSER, chromium_sandbox=os.getuid() != 0)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requested.append((r.resource_type, r.url)))
            page.goto(server.url("/"))
            assert page.url.startswith(server.url("/login"))
            page.fill("input[name=token]", seeded.tokens["analyst"])
            page.click("button:has-text('Log in')")
            page.wait_for_selector("h1:has-text('Dashboard')")

            page.click("header >> text=Search")
            page.fill("input[name=domain]", "gallery.example.test")
            page.click("form.filters button")
            page.wait_for_selector("text=1 report(s)")
            page.click(f"a[href='/reports/{seeded.reports['hit']}']")
            page.wait_for_selector(f"h1:has-text('Report #{seeded.reports['hit']}')")
            assert page.inner_text("#takedown-state").strip() == "not referred"
            assert "Scan 1 completed" in page.inner_text(".timeline")

            page.fill("input[name=party]", "Hosting Provider A")
            page.click("#refer")
            page.wait_for_selector("text=Referred to Hosting Provider A.")
            state = page.inner_text("#takedown-state")
            assert state.startswith("monitoring: referred to Hosting Provider A"), state
            assert "Referred to Hosting Provider A" in page.inner_text(".timeline")
        finally:
            browser.close()
    assert {kind for kind, _ in requested} == {"document"}
    assert all(url.startswith(server.url("/")) for _, url in requested)
