"""The review page in a real browser: headless Chromium (Debian's ``chromium``) driven by
playwright opens the page with the network blocked and finds its charts drawn; the
screenshot is kept in ``artifacts/analytics/``.

Chromium is a system package: without it the test is skipped with the reason, unless
``LIVECOMMERCE_REQUIRE_STACK`` is set (then it fails)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from services.analytics.bootstrap import Analytics
from services.analytics.tests.conftest import bearer, raw
from services.analytics.tests.script import Script
from services.kit.identity import Role

CHROMIUM = Path(os.environ.get("LIVECOMMERCE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[4] / "artifacts" / "analytics"
CHARTS_DRAWN = """() => {
  const plots = document.querySelectorAll('.js-plotly-plot');
  return plots.length === 3 && [...plots].every(p => p.querySelector('.main-svg'));
}"""


def _needs(what: str) -> None:
    reason = f"the render test needs {what} (apt-get install -y chromium; pip install playwright)"
    if os.environ.get("LIVECOMMERCE_REQUIRE_STACK"):
        pytest.fail(reason)
    pytest.skip(reason)


async def test_the_review_page_shows_its_charts_in_headless_chromium_without_a_network(
    parts: Analytics, http: httpx.AsyncClient, script: Script, tmp_path: Path
) -> None:
    if not await asyncio.to_thread(CHROMIUM.exists):
        _needs(f"Chromium at {CHROMIUM}")
    try:
        from playwright.async_api import Route, async_playwright
    except ImportError:
        _needs("the playwright package")
    await parts.processor.apply(raw(script))
    boss = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)
    html = (await http.get("/v1/rooms/r1/review.html", headers=boss)).text
    requested: list[str] = []

    async def refuse(route: Route) -> None:
        requested.append(route.request.url)
        await route.abort()

    async with async_playwright() as driver:
        browser = await driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            await browser.route("**/*", refuse)
            page = await browser.new_page()
            await page.set_content(html, wait_until="load", timeout=30_000)
            await page.wait_for_function(CHARTS_DRAWN, timeout=30_000)
            viewer_points = await page.evaluate(
                "document.querySelector('#chart-0').data[0].y.length"
            )
            traces = await page.evaluate(
                "[...document.querySelectorAll('.js-plotly-plot')].map(p => p.data.length)"
            )
            marker_lines = await page.evaluate(
                "document.querySelector('#chart-0').layout.shapes.length"
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
        finally:
            await browser.close()

    assert requested == []
    assert viewer_points == 6
    assert traces == [5, 1, 2]
    assert marker_lines == 5 * 3  # each marker across the three panels
    assert (ARTIFACTS / "review.png").stat().st_size > 10_000
