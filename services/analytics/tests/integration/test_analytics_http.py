"""Who sees what, bad input refused with problem+json, the live stream (server-sent
events) and the review page."""

from __future__ import annotations

import asyncio
import json
import re

import httpx

from services.analytics.bootstrap import Analytics
from services.analytics.tests.conftest import bearer, raw
from services.analytics.tests.script import Script
from services.kit.identity import Role


def _until_started(script: Script) -> int:
    """How many envelopes come before the room r1 ends."""
    return next(
        i
        for i, (_, e) in enumerate(script.envelopes)
        if e.event_type.endswith("RoomEnded") and e.aggregate_id.endswith(":r1")
    )


async def test_staff_of_another_merchant_and_viewers_see_nothing(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    await parts.processor.apply(raw(script))

    viewer = await http.get(
        "/v1/rooms/r1/live", headers=bearer(parts, "v1", Role.VIEWER, merchant=script.merchant)
    )
    stranger = await http.get(
        "/v1/rooms/r1/review", headers=bearer(parts, "x", Role.MERCHANT_ADMIN, merchant="other")
    )
    other_host = await http.get(
        "/v1/rooms/r1/live", headers=bearer(parts, "h2", Role.HOST, merchant=script.merchant)
    )
    own_host = await http.get(
        "/v1/rooms/r1/live", headers=bearer(parts, "h1", Role.HOST, merchant=script.merchant)
    )
    ops_without_merchant = await http.get(
        "/v1/rooms/r1/live", headers=bearer(parts, "ops", Role.OPS, merchant=None)
    )
    ops = await http.get(
        "/v1/rooms/r1/live",
        params={"merchant_id": script.merchant},
        headers=bearer(parts, "ops", Role.OPS, merchant=None),
    )
    anonymous = await http.get("/v1/rooms/r1/live")

    assert viewer.status_code == 403
    assert stranger.status_code == 404
    assert other_host.status_code == 404
    assert own_host.status_code == 200
    assert ops_without_merchant.status_code == 422
    assert ops.status_code == 200
    assert anonymous.status_code == 401
    for refused in (viewer, stranger, other_host, ops_without_merchant, anonymous):
        assert refused.headers["content-type"] == "application/problem+json"


async def test_bad_requests_are_refused_with_problem_json(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    await parts.processor.apply(raw(script)[: _until_started(script)])
    boss = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)

    live_review = await http.get("/v1/rooms/r1/review", headers=boss)
    unknown = await http.get("/v1/rooms/nope/live", headers=boss)
    unknown_fan = await http.get("/v1/fans/nobody", headers=boss)
    no_since = await http.get("/v1/hosts/performance", headers=boss)
    bad_since = await http.get("/v1/hosts/performance", params={"since": "yesterday"}, headers=boss)
    backwards = await http.get(
        "/v1/hosts/performance",
        params={"since": "2026-11-02T00:00Z", "until": "2026-11-01T00:00Z"},
        headers=boss,
    )
    naive = await http.get(
        "/v1/hosts/performance", params={"since": "2026-11-01T00:00"}, headers=boss
    )

    assert (live_review.status_code, live_review.json()["title"]) == (409, "Precondition failed")
    assert unknown.status_code == 404
    assert unknown_fan.status_code == 404
    assert [r.status_code for r in (no_since, bad_since, backwards, naive)] == [422] * 4
    assert {r.headers["content-type"] for r in (live_review, no_since, backwards)} == {
        "application/problem+json"
    }


async def test_the_live_stream_sends_each_change_and_closes_when_the_room_ends(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    events = raw(script)
    cut = _until_started(script)
    await parts.processor.apply(events[:cut])
    boss = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)

    async def listen() -> str:
        answer = await http.get("/v1/rooms/r1/live/stream", headers=boss, timeout=10)
        assert answer.headers["content-type"].startswith("text/event-stream")
        return answer.text

    listening = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    await parts.processor.apply(events[cut:])
    text = await asyncio.wait_for(listening, timeout=10)

    frames = [f for f in text.split("\n\n") if f.startswith("event: live")]
    boards = [json.loads(f.split("data: ", 1)[1]) for f in frames]
    assert len(boards) >= 2
    assert boards[0]["headline"]["state"] == "live"
    assert boards[0]["headline"]["concurrent_viewers"] == 3
    assert boards[-1]["headline"]["state"] == "ended"
    assert boards[-1]["headline"]["gmv_paid_minor"] == 44_700
    assert text.rstrip().endswith("event: ended\ndata: {}")


async def test_the_review_page_embeds_its_charting_library_and_fetches_nothing(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    await parts.processor.apply(raw(script))
    boss = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)

    page = await http.get("/v1/rooms/r1/review.html", headers=boss)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Plotly.newPlot" in page.text
    assert not re.findall(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", page.text)
    assert "Autumn lipstick live" in page.text
