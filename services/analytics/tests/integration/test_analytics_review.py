"""The review of a scripted stream, every figure exact: real envelopes of every producing
service folded by the processor into Postgres, read back over HTTP. Redelivery, another
processing order and another batching change nothing."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime

import httpx

from services.analytics.bootstrap import Analytics
from services.analytics.domain.review import live_dashboard
from services.analytics.tests import expected
from services.analytics.tests.conftest import bearer, raw
from services.analytics.tests.script import Script
from services.kit.identity import Role


async def _review(http: httpx.AsyncClient, parts: Analytics, script: Script) -> dict[str, object]:
    headers = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)
    answer = await http.get("/v1/rooms/r1/review", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_the_review_of_a_scripted_stream_has_every_figure_exactly(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    outcome = await parts.processor.apply(raw(script))

    review = await _review(http, parts, script)

    assert (outcome.applied, outcome.duplicates, outcome.rejected) == (54, 0, 0)
    assert review == expected.review(script.merchant, script.t0)


async def test_redelivered_events_do_not_count_twice(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    events = raw(script)
    await parts.processor.apply(events[:30])
    again = await parts.processor.apply(events[10:40])
    everything_again = await parts.processor.apply(events + events[:5])

    review = await _review(http, parts, script)

    assert (again.applied, again.duplicates) == (10, 20)
    assert (everything_again.applied, everything_again.duplicates) == (14, 45)
    assert review == expected.review(script.merchant, script.t0)


async def test_reading_topic_by_topic_in_small_batches_gives_the_same_review(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    """A replay reads partitions in another interleaving than the live stream; each
    aggregate's events stay in order, nothing else is promised."""
    by_topic: dict[str, list[bytes]] = defaultdict(list)
    for producer, envelope in script.envelopes:
        by_topic[producer].append(envelope.SerializeToString())
    for producer in ("referral", "order", "inventory", "promotion", "room"):
        events = by_topic[producer]
        for start in range(0, len(events), 4):
            await parts.processor.apply(events[start : start + 4])

    review = await _review(http, parts, script)

    assert review == expected.review(script.merchant, script.t0)


async def test_the_live_dashboard_mid_stream_shows_the_figures_so_far(
    parts: Analytics, script: Script
) -> None:
    """After the events up to 150 s: v1 (second visit), v2, v3 and v4 are in (4); o1, o2, o3
    placed, o1 and o2 paid."""
    cut = next(
        i
        for i, (_, e) in enumerate(script.envelopes)
        if e.occurred_at.ToDatetime(UTC) > script.at(150)
    )
    await parts.processor.apply(raw(script)[:cut])

    snapshot = await parts.queries.room_snapshot(script.merchant, "r1")
    assert snapshot is not None
    board = live_dashboard(snapshot, script.at(150))

    assert board.headline.state == "live"
    assert (board.headline.concurrent_viewers, board.headline.unique_viewers) == (4, 4)
    assert (board.headline.peak_viewers, board.headline.peak_at) == (4, script.at(140))
    assert (board.headline.orders, board.headline.paid_orders) == (3, 2)
    assert (board.headline.gmv_placed_minor, board.headline.gmv_paid_minor) == (39_700, 34_700)
    assert board.comments_last_minute == 2
    assert [m.minute for m in board.timeline][-1] == script.at(120).strftime("%Y-%m-%dT%H:%MZ")
    assert [(p.sku_id, p.stock_left) for p in board.products] == [("SKU-A", 97), ("SKU-B", 50)]
    assert [m.kind for m in board.markers] == ["pin", "flash_sale", "coupon_drop"]


async def test_the_review_downloads_as_csv_with_every_figure(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    await parts.processor.apply(raw(script))
    headers = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)

    answer = await http.get("/v1/rooms/r1/review.csv", headers=headers)
    rows = list(csv.reader(io.StringIO(answer.text)))

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="review-r1.csv"' in answer.headers["content-disposition"]
    assert rows[0] == ["section", "name", "metric", "value"]
    figures = {(r[0], r[1], r[2]): r[3] for r in rows[1:]}
    assert figures[("headline", "r1", "gmv_paid_minor")] == "44700"
    assert figures[("headline", "r1", "peak_at")] == script.at(160).isoformat()
    assert figures[("product", "SKU-B", "units_refunded")] == "1"
    assert figures[("sharer", "s1", "gmv_paid_minor")] == "9900"
    assert figures[("buyers", "r1", "returning")] == "1"
    minute = script.at(60).strftime("%Y-%m-%dT%H:%MZ")
    assert figures[("timeline", minute, "gmv_placed_minor")] == "34700"


async def test_fan_profiles_audience_and_host_performance_follow_the_stream(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    await parts.processor.apply(raw(script))
    headers = bearer(parts, "boss", Role.MERCHANT_ADMIN, merchant=script.merchant)
    since = script.at(-3600).isoformat()
    until = script.at(3600).isoformat()

    v3 = (await http.get("/v1/fans/v3", headers=headers)).json()
    v2 = (await http.get("/v1/fans/v2", headers=headers)).json()
    audience = (await http.get("/v1/rooms/r1/audience", headers=headers)).json()
    hosts = await http.get(
        "/v1/hosts/performance", params={"since": since, "until": until}, headers=headers
    )

    assert v3["figures"] == {
        "merchant_id": script.merchant,
        "user_id": "v3",
        "first_seen_at": script.at(-86_400 + 10).isoformat(),
        "last_seen_at": script.at(300).isoformat(),
        "streams_watched": 2,
        "watch_seconds": 360,
        "orders": 2,
        "spend_minor": 27_800,
        "last_purchase_at": script.at(150).isoformat(),
        "categories": ["lipstick", "skincare"],
        "entry_channel": "app",
        "entry": "",
        "sharer_id": "",
    }
    assert v3["rfm"] == {"recency": 3, "frequency": 2, "monetary": 2}
    assert v3["segments"] == ["new", "active"]
    assert (v2["figures"]["sharer_id"], v2["figures"]["entry"]) == ("s1", "share_link")
    assert (v2["figures"]["spend_minor"], v2["figures"]["categories"]) == (9_900, ["lipstick"])
    assert audience == {
        "viewers": 5,
        "first_time_viewers": 4,
        "returning_viewers": 1,
        "buyers": 3,
        "segments": {"active": 5, "new": 5},
        "entry_channels": {"app": 1, "h5": 2, "mini_program": 2},
        "entries": {"direct": 3, "invitation_card": 1, "share_link": 1},
        "average_watch_seconds": 204.0,
        "top_categories": [["lipstick", 2], ["skincare", 2]],
    }
    assert hosts.status_code == 200, hosts.text
    assert hosts.json()["hosts"] == [
        {
            "host_id": "h1",
            "streams": 1,
            "hours_live": 0.083,
            "gmv_paid_minor": 44_700,
            "net_gmv_minor": 39_700,
            "paid_orders": 3,
            "unique_viewers": 5,
            "conversion": 0.6,
            "average_viewers": 3.1,
            "rooms": ["r1"],
        }
    ]


async def test_a_period_with_both_streams_sums_them_for_the_host(
    parts: Analytics, http: httpx.AsyncClient, script: Script
) -> None:
    """r0 (the day before, 600 s, v3 watched 90 s and paid 3,000) and r1."""
    await parts.processor.apply(raw(script))
    headers = bearer(parts, "h1", Role.HOST, merchant=script.merchant)

    answer = await http.get(
        "/v1/hosts/performance",
        params={
            "since": script.at(-2 * 86_400).isoformat(),
            "until": datetime.now(UTC).isoformat(),
        },
        headers=headers,
    )

    (host,) = answer.json()["hosts"]
    assert (host["streams"], host["rooms"]) == (2, ["r0", "r1"])
    assert (host["gmv_paid_minor"], host["paid_orders"], host["unique_viewers"]) == (47_700, 4, 6)
    assert host["hours_live"] == round(900 / 3600, 3)
    assert host["average_viewers"] == round((90 + 930) / 900, 2)
    assert host["conversion"] == round(4 / 6, 4)
