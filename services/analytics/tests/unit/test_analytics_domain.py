"""The folding logic as tables: counters, presence, the review's assembly, fan segments
and host performance, with no I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.analytics.domain import counters as c
from services.analytics.domain import facts as f
from services.analytics.domain import presence
from services.analytics.domain.fans import FanFigures, audience, profile, rfm, segments
from services.analytics.domain.hosts import HostStream, performance
from services.analytics.domain.review import RoomSnapshot, funnel, headline, review, review_rows

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
M, R = "m1", "r1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def joined(seconds: float, viewer: str = "v1", channel: str = "h5") -> f.ViewerJoined:
    return f.ViewerJoined(M, R, f"visit-{viewer}-{seconds}", viewer, channel, "", "", at(seconds))


Step = Callable[[c.RoomCounters], c.RoomCounters]
A1 = f.Line("SKU-A", 1, 9_900)
B2 = f.Line("SKU-B", 2, 10_000)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([], c.RoomCounters(), id="nothing"),
        pytest.param(
            [
                lambda x: c.count_visit(x, joined(10), first_in_room=True),
                lambda x: c.count_visit(x, joined(70), first_in_room=False),
            ],
            c.RoomCounters(
                visits=2,
                unique_viewers=1,
                minutes={
                    "2026-11-20T12:00Z": c.MinuteCounts(joins=1),
                    "2026-11-20T12:01Z": c.MinuteCounts(joins=1),
                },
                channels={"h5": c.ChannelCounts(visits=2, viewers=1)},
            ),
            id="a viewer's second visit is a visit, not a viewer",
        ),
        pytest.param(
            [
                lambda x: c.count_order_placed(
                    x, f.OrderPlaced(M, "o1", "v1", R, "", "", (A1, B2), 19_900, at(5))
                )
            ],
            c.RoomCounters(
                orders=1,
                gmv_placed_minor=19_900,
                minutes={"2026-11-20T12:00Z": c.MinuteCounts(orders=1, gmv_placed_minor=19_900)},
                channels={"unknown": c.ChannelCounts(orders=1)},
                products={
                    "SKU-A": c.ProductCounts(orders=1, units_placed=1, gmv_placed_minor=9_900),
                    "SKU-B": c.ProductCounts(orders=1, units_placed=2, gmv_placed_minor=10_000),
                },
            ),
            id="an order counts per product and in its minute",
        ),
        pytest.param(
            [
                lambda x: c.count_order_paid(
                    x, f.OrderPaid(M, "o1", "v1", 19_900, at(65), R, "app", (A1, B2))
                )
            ],
            c.RoomCounters(
                paid_orders=1,
                gmv_paid_minor=19_900,
                minutes={"2026-11-20T12:01Z": c.MinuteCounts(paid_orders=1, gmv_paid_minor=19_900)},
                channels={"app": c.ChannelCounts(paid_orders=1, gmv_paid_minor=19_900)},
                products={
                    "SKU-A": c.ProductCounts(paid_orders=1, units_paid=1, gmv_paid_minor=9_900),
                    "SKU-B": c.ProductCounts(paid_orders=1, units_paid=2, gmv_paid_minor=10_000),
                },
            ),
            id="a payment lands in the minute it was paid",
        ),
        pytest.param(
            [
                lambda x: c.count_refund(
                    x, f.OrderRefunded(M, "o1", "rf", 5_000, (f.Line("SKU-B", 1, 5_000),), at(1))
                )
            ],
            c.RoomCounters(
                refunds=1,
                refunded_minor=5_000,
                minutes={"2026-11-20T12:00Z": c.MinuteCounts(refunded_minor=5_000)},
                products={"SKU-B": c.ProductCounts(units_refunded=1, refunded_minor=5_000)},
            ),
            id="a refund is counted per product",
        ),
        pytest.param(
            [
                lambda x: c.count_subscriber(
                    x, f.ReminderSent(M, R, "v1", at(0)), first_in_room=True
                ),
                lambda x: c.count_subscriber(
                    x, f.ReminderSent(M, R, "v1", at(1)), first_in_room=False
                ),
                lambda x: c.count_comment(x, f.CommentPosted(M, R, "v1", at(2))),
                lambda x: c.count_pin(x, f.ProductPinned(M, R, "SKU-A", at(3))),
            ],
            c.RoomCounters(
                subscribers=1,
                comments=1,
                pins=1,
                minutes={"2026-11-20T12:00Z": c.MinuteCounts(comments=1)},
                products={"SKU-A": c.ProductCounts(pins=1)},
            ),
            id="subscribers once each, comments and pins",
        ),
    ],
)
def test_counters_fold_each_fact_into_its_sums(steps: list[Step], expected: c.RoomCounters) -> None:
    folded = c.RoomCounters()
    for step in steps:
        folded = step(folded)
    assert folded == expected


def test_counters_do_not_depend_on_the_order_facts_are_folded_in() -> None:
    steps: list[Step] = [
        lambda x: c.count_visit(x, joined(10, "v1"), first_in_room=True),
        lambda x: c.count_visit(x, joined(100, "v2", "app"), first_in_room=True),
        lambda x: c.count_order_placed(
            x, f.OrderPlaced(M, "o1", "v1", R, "h5", "", (A1,), 9_900, at(30))
        ),
        lambda x: c.count_comment(x, f.CommentPosted(M, R, "v2", at(130))),
    ]
    forwards, backwards = c.RoomCounters(), c.RoomCounters()
    for step in steps:
        forwards = step(forwards)
    for step in reversed(steps):
        backwards = step(backwards)
    assert forwards == backwards


def test_counters_survive_their_json_form_and_ignore_unknown_fields() -> None:
    folded = c.count_order_paid(
        c.RoomCounters(), f.OrderPaid(M, "o1", "v1", 9_900, at(0), R, "app", (A1,))
    )
    stored = c.counters_to_dict(folded)
    stored["a_future_counter"] = 3
    stored["products"]["SKU-A"]["a_future_field"] = 1
    assert c.counters_from_dict(stored) == folded


DELTAS = [
    (at(10), 1),
    (at(20), 1),
    (at(30), 1),
    (at(90), -1),
    (at(130), 1),
    (at(140), 1),
    (at(160), 1),
    (at(190), -1),
    (at(240), -1),
    (at(300), -3),
]


@pytest.mark.parametrize(
    ("deltas", "peak", "peak_at", "now"),
    [
        pytest.param([], 0, None, 0, id="an empty room"),
        pytest.param(DELTAS, 5, at(160), 0, id="the scripted stream"),
        pytest.param(list(reversed(DELTAS)), 5, at(160), 0, id="in any order"),
        pytest.param([(at(5), -1), (at(10), 1)], 1, at(10), 1, id="a leave before any join"),
        pytest.param([(at(10), 2), (at(20), -1), (at(30), 1)], 2, at(10), 2, id="first reached"),
    ],
)
def test_peak_concurrency_is_the_highest_running_sum_and_when_it_was_first_reached(
    deltas: list[presence.Delta], peak: int, peak_at: datetime | None, now: int
) -> None:
    assert presence.peak(deltas) == presence.Peak(peak, peak_at)
    assert presence.current(deltas) == now


def test_viewers_per_minute_carry_the_level_through_quiet_minutes() -> None:
    minutes = presence.per_minute([(at(10), 2), (at(250), -1)], at(0), at(300))
    assert [(m.peak, m.at_end) for m in minutes] == [(2, 2), (2, 2), (2, 2), (2, 2), (2, 1), (1, 1)]


@pytest.mark.parametrize(
    ("start", "end", "seconds"),
    [
        (0, 300, 930),
        (0, 150, 10 * 0 + 10 + 10 * 2 + 60 * 3 + 40 * 2 + 10 * 3 + 10 * 4),
        (100, 200, 30 * 2 + 10 * 3 + 20 * 4 + 30 * 5 + 10 * 4),
        (400, 500, 0),
    ],
)
def test_viewer_seconds_integrate_concurrency_over_a_window(
    start: int, end: int, seconds: int
) -> None:
    assert presence.viewer_seconds(DELTAS, at(start), at(end)) == seconds


def _snapshot(**overrides: object) -> RoomSnapshot:
    base: dict[str, object] = {
        "merchant_id": M,
        "room_id": R,
        "host_id": "h1",
        "title": "t",
        "started_at": at(0),
        "ended_at": at(300),
        "counters": c.RoomCounters(
            unique_viewers=5,
            orders=4,
            paid_orders=3,
            gmv_paid_minor=44_700,
            refunded_minor=5_000,
            comments=4,
        ),
        "presence": DELTAS,
        "markers": [],
        "pin_viewers": 4,
        "buyers": 4,
        "paying_buyers": 3,
        "new_buyers": 2,
        "sharers": [],
    }
    base.update(overrides)
    return RoomSnapshot(**base)  # type: ignore[arg-type]


def test_the_headline_derives_rates_from_the_snapshot() -> None:
    h = headline(_snapshot(), at(10_000))
    assert (h.state, h.live_seconds, h.concurrent_viewers) == ("ended", 300, 0)
    assert (h.peak_viewers, h.peak_at, h.average_viewers) == (5, at(160), 3.1)
    assert (h.conversion, h.average_order_minor, h.net_gmv_minor) == (0.6, 14_900, 39_700)
    assert h.comments_per_minute == 0.8


def test_a_live_room_counts_until_now_and_shows_who_is_in() -> None:
    so_far = [(moment, delta) for moment, delta in DELTAS if moment <= at(150)]
    h = headline(_snapshot(ended_at=None, presence=so_far), at(150))
    assert (h.state, h.live_seconds, h.concurrent_viewers) == ("live", 150, 4)


@pytest.mark.parametrize(
    ("viewers", "pin_viewers", "buyers", "paying", "rates"),
    [
        (5, 4, 4, 3, (0.8, 1.0, 0.75, 0.6)),
        (0, 0, 0, 0, (0.0, 0.0, 0.0, 0.0)),
        (3, 3, 1, 0, (1.0, 0.3333, 0.0, 0.0)),
    ],
)
def test_the_funnel_divides_each_stage_by_the_one_before(
    viewers: int, pin_viewers: int, buyers: int, paying: int, rates: tuple[float, ...]
) -> None:
    s = _snapshot(
        counters=c.RoomCounters(unique_viewers=viewers),
        pin_viewers=pin_viewers,
        buyers=buyers,
        paying_buyers=paying,
    )
    result = funnel(s)
    assert (
        result.view_to_pin,
        result.pin_to_order,
        result.order_to_paid,
        result.view_to_paid,
    ) == rates


def test_review_rows_hold_every_section_once() -> None:
    rows = review_rows(review(_snapshot(), at(10_000)))
    assert {row[0] for row in rows} >= {"headline", "funnel", "timeline", "buyers", "refunds"}
    assert ("buyers", R, "returning", "1") in rows
    assert len(rows) == len(set(rows))


NOW = datetime(2026, 11, 20, tzinfo=UTC)


def fan(**overrides: object) -> FanFigures:
    base: dict[str, object] = {
        "merchant_id": M,
        "user_id": "u",
        "first_seen_at": NOW - timedelta(days=200),
        "last_seen_at": NOW - timedelta(days=1),
        "streams_watched": 3,
        "watch_seconds": 100,
        "orders": 0,
        "spend_minor": 0,
        "last_purchase_at": None,
        "categories": (),
        "entry_channel": "h5",
        "entry": "",
        "sharer_id": "",
    }
    base.update(overrides)
    return FanFigures(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("figures", "scores", "expected"),
    [
        pytest.param(
            fan(first_seen_at=NOW - timedelta(days=2)),
            (0, 0, 0),
            ("new", "active"),
            id="a new watcher",
        ),
        pytest.param(fan(), (0, 0, 0), ("active",), id="an old watcher seen yesterday"),
        pytest.param(
            fan(last_seen_at=NOW - timedelta(days=120)),
            (0, 0, 0),
            ("lapsed",),
            id="gone for four months",
        ),
        pytest.param(
            fan(orders=6, spend_minor=150_000, last_purchase_at=NOW - timedelta(days=3)),
            (3, 3, 3),
            ("active", "high_value"),
            id="a frequent big spender",
        ),
        pytest.param(
            fan(
                orders=6,
                spend_minor=150_000,
                last_purchase_at=NOW - timedelta(days=60),
                last_seen_at=NOW - timedelta(days=60),
            ),
            (2, 3, 3),
            ("high_value",),
            id="high value but quiet for two months",
        ),
        pytest.param(
            fan(
                orders=6,
                spend_minor=150_000,
                last_purchase_at=NOW - timedelta(days=100),
                last_seen_at=NOW - timedelta(days=100),
            ),
            (1, 3, 3),
            ("lapsed",),
            id="a big spender who lapsed is not high value",
        ),
        pytest.param(
            fan(orders=2, spend_minor=25_000, last_purchase_at=NOW - timedelta(days=3)),
            (3, 2, 2),
            ("active",),
            id="a repeat buyer below the high-value line",
        ),
    ],
)
def test_fans_are_segmented_by_recency_frequency_and_money(
    figures: FanFigures, scores: tuple[int, int, int], expected: tuple[str, ...]
) -> None:
    score = rfm(figures, NOW)
    assert (score.recency, score.frequency, score.monetary) == scores
    assert segments(figures, NOW) == expected
    assert profile(figures, NOW).segments == expected


def test_an_audience_sums_its_fans() -> None:
    fans = [
        fan(user_id="a", orders=1, spend_minor=100, last_purchase_at=NOW, categories=("x",)),
        fan(
            user_id="b",
            entry_channel="app",
            entry="share_link",
            watch_seconds=300,
            categories=("x", "y"),
        ),
    ]
    result = audience(fans, first_time=1, now=NOW)
    assert (result.viewers, result.first_time_viewers, result.returning_viewers) == (2, 1, 1)
    assert result.buyers == 1
    assert result.segments == {"active": 2}
    assert result.entry_channels == {"app": 1, "h5": 1}
    assert result.entries == {"direct": 1, "share_link": 1}
    assert result.average_watch_seconds == 200.0
    assert result.top_categories == [("x", 2), ("y", 1)]


def test_host_performance_sums_streams_and_counts_a_live_one_until_now() -> None:
    streams = [
        HostStream("r1", "h1", at(0), at(3600), 100, 10, 12, 120_000, 20_000, 3600 * 40),
        HostStream("r2", "h1", at(7200), None, 50, 5, 5, 30_000, 0, 1800 * 20),
    ]
    result = performance("h1", streams, at(9000))
    assert (result.streams, result.hours_live, result.rooms) == (2, 1.5, ("r1", "r2"))
    assert (result.gmv_paid_minor, result.net_gmv_minor, result.paid_orders) == (
        150_000,
        130_000,
        17,
    )
    assert (result.unique_viewers, result.conversion) == (150, 0.1)
    assert result.average_viewers == round((3600 * 40 + 1800 * 20) / 5400, 2)
