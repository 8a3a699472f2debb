"""Reminders, lucky draws and campaign launches against the real Postgres and Redis:
reminders are owed once per subscriber, room and kind and delivered with retries; draws
are reproducible from their recorded seed and candidates; a host's campaign launch reaches
promotion and the room's viewers."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from livecommerce.room.v1 import events_pb2 as pb
from services.kit.errors import AlreadyExistsError, PermissionDeniedError
from services.kit.identity import Caller, Role
from services.kit.testing import unique
from services.kit.timers import TimerWorker
from services.room.adapters.rooms import REMINDER_TIMER
from services.room.domain.comments import PostComment
from services.room.domain.draws import DrawPool, HoldDraw, draw_winners
from services.room.domain.reminders import ReminderKind, SubscriptionTarget
from services.room.domain.room import RescheduleRoom, RoomStateError, ScheduleRoom
from services.room.domain.viewers import JoinRoom
from services.room.tests.conftest import Harness

REMINDER_SENT = pb.ReminderSent.DESCRIPTOR.full_name


async def scheduled_room(harness: Harness, merchant: str, host: str, minutes: float) -> str:
    room_id = unique("room")
    await harness.service.rooms.schedule(
        harness.issuer_caller(merchant, Role.OPERATOR),
        ScheduleRoom(
            merchant,
            room_id,
            host,
            "Show",
            "https://x.example/c.jpg",
            ("app",),
            harness.clock() + timedelta(minutes=minutes),
            timedelta(hours=1),
        ),
    )
    return room_id


def viewer(merchant: str, name: str) -> Caller:
    return Caller(name, frozenset({Role.VIEWER}), merchant)


async def fire_reminder_timers(harness: Harness) -> None:
    worker = TimerWorker(
        pool=harness.service.pool, kind=REMINDER_TIMER, handler=harness.service.reminders.on_timer
    )
    await worker.fire_due()


async def sent_events(harness: Harness, merchant: str) -> list[pb.ReminderSent]:
    rows = await harness.service.pool.fetch(
        "SELECT payload FROM events WHERE event_type = $1 AND merchant_id = $2",
        REMINDER_SENT,
        merchant,
    )
    return [pb.ReminderSent.FromString(row["payload"]) for row in rows]


async def test_reminders_go_once_per_subscriber_before_the_start_and_at_go_live(
    harness: Harness,
) -> None:
    merchant, host = unique("m"), unique("host")
    room_id = await scheduled_room(harness, merchant, host, minutes=30)  # lead is 1 h: due now
    reminders = harness.service.reminders
    await reminders.subscribe(
        viewer(merchant, "fan-room"), merchant, SubscriptionTarget.ROOM, room_id
    )
    await reminders.subscribe(viewer(merchant, "fan-host"), merchant, SubscriptionTarget.HOST, host)
    await reminders.subscribe(
        viewer(merchant, "fan-both"), merchant, SubscriptionTarget.ROOM, room_id
    )
    await reminders.subscribe(viewer(merchant, "fan-both"), merchant, SubscriptionTarget.HOST, host)
    await fire_reminder_timers(harness)
    await reminders.deliver_due()
    operator = harness.issuer_caller(merchant, Role.OPERATOR)
    await harness.service.rooms.reschedule(
        operator, merchant, room_id, RescheduleRoom(harness.clock() + timedelta(minutes=40))
    )
    await fire_reminder_timers(harness)  # the lead timer fires again: owes nothing new
    await reminders.deliver_due()
    await harness.service.rooms.start(operator, merchant, room_id)
    await fire_reminder_timers(harness)
    await reminders.deliver_due()
    mine = [r for r in harness.notifier.sent if r.room_id == room_id]
    assert sorted((r.viewer_id, r.kind.value) for r in mine) == [
        ("fan-both", "lead"),
        ("fan-both", "live"),
        ("fan-host", "lead"),
        ("fan-host", "live"),
        ("fan-room", "lead"),
        ("fan-room", "live"),
    ]
    assert all(r.title == "Show" and r.host_id == host for r in mine)
    events = await sent_events(harness, merchant)
    assert sorted((e.viewer_id, e.kind) for e in events) == sorted(
        (r.viewer_id, r.kind.value) for r in mine
    )


async def test_a_failed_delivery_is_retried_and_a_cancelled_room_reminds_nobody(
    harness: Harness,
) -> None:
    merchant, host = unique("m"), unique("host")
    room_id = await scheduled_room(harness, merchant, host, minutes=30)
    cancelled = await scheduled_room(harness, merchant, unique("host"), minutes=30)
    reminders = harness.service.reminders
    for target in (room_id, cancelled):
        await reminders.subscribe(
            viewer(merchant, "flaky"), merchant, SubscriptionTarget.ROOM, target
        )
    await harness.service.rooms.cancel(
        harness.issuer_caller(merchant, Role.OPERATOR), merchant, cancelled, "moved"
    )
    harness.notifier.failing.add("flaky")
    await fire_reminder_timers(harness)
    await reminders.deliver_due()
    assert [r for r in harness.notifier.sent if r.viewer_id == "flaky"] == []
    harness.notifier.failing.clear()
    await harness.service.pool.execute(
        "UPDATE reminder_deliveries SET next_attempt_at = now() WHERE merchant_id = $1", merchant
    )
    await reminders.deliver_due()
    delivered = [(r.room_id, r.kind) for r in harness.notifier.sent if r.viewer_id == "flaky"]
    assert delivered == [(room_id, ReminderKind.LEAD)]
    row = await harness.service.pool.fetchrow(
        "SELECT attempts, last_error FROM reminder_deliveries WHERE merchant_id = $1", merchant
    )
    assert row is not None
    assert row["attempts"] == 2
    assert "gateway down" in row["last_error"]


async def test_a_draw_among_present_viewers_is_reproducible_from_its_record(
    harness: Harness,
) -> None:
    merchant = unique("m")
    room_id = await scheduled_room(harness, merchant, unique("host"), minutes=0)
    operator = harness.issuer_caller(merchant, Role.OPERATOR)
    await harness.service.rooms.start(operator, merchant, room_id)
    for i in range(20):
        await harness.service.viewers.join(JoinRoom(merchant, room_id, f"v{i:02}", "app"))
    command = HoldDraw(merchant, room_id, "d1", "Lipstick", 5, DrawPool.PRESENT)
    held = await harness.service.draws.hold(operator, command)
    assert len(held.winners) == len(set(held.winners)) == 5
    recorded, candidates = await harness.service.draws.get(operator, merchant, room_id, "d1")
    assert candidates == sorted(f"v{i:02}" for i in range(20))
    assert recorded.candidates_sha256 == hashlib.sha256("\n".join(candidates).encode()).hexdigest()
    assert draw_winners(recorded.seed, candidates, 5) == held.winners == recorded.winners
    with pytest.raises(AlreadyExistsError):
        await harness.service.draws.hold(operator, command)
    with pytest.raises(PermissionDeniedError):
        await harness.service.draws.hold(
            viewer(merchant, "v01"), HoldDraw(merchant, room_id, "d2", "x", 1, DrawPool.PRESENT)
        )


async def test_a_draw_among_commenters_of_a_keyword_counts_each_commenter_once(
    harness: Harness,
) -> None:
    merchant = unique("m")
    room_id = await scheduled_room(harness, merchant, unique("host"), minutes=0)
    operator = harness.issuer_caller(merchant, Role.OPERATOR)
    await harness.service.rooms.start(operator, merchant, room_id)
    for name, text in [("a", "I want it"), ("b", "WANT"), ("a", "want want"), ("c", "no")]:
        await harness.service.comments.post(PostComment(merchant, room_id, name, text))
    held = await harness.service.draws.hold(
        operator,
        HoldDraw(
            merchant,
            room_id,
            "d-kw",
            "Mask",
            10,
            DrawPool.COMMENTERS,
            keyword="want",
            seed="published-seed",
        ),
    )
    assert held.candidate_count == 2
    assert sorted(held.winners) == ["a", "b"]
    assert held.seed == "published-seed"


async def test_the_host_launches_and_stops_a_campaign_and_viewers_hear_it(
    harness: Harness,
) -> None:
    merchant, host = unique("m"), unique("host")
    room_id = await scheduled_room(harness, merchant, host, minutes=0)
    host_caller = Caller(host, frozenset({Role.HOST}), merchant)
    harness.campaigns.rooms["flash-1"] = room_id
    harness.campaigns.states["flash-1"] = "scheduled"
    with pytest.raises(RoomStateError):
        await harness.service.campaigns.start(host_caller, merchant, room_id, "flash-1")
    await harness.service.rooms.start(host_caller, merchant, room_id)
    pubsub = harness.service.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{harness.service.settings.push_channel_prefix}:{merchant}:{room_id}")
    try:
        started = await harness.service.campaigns.start(host_caller, merchant, room_id, "flash-1")
        assert started.state == "live"
        message = None
        for _ in range(10):  # the first read consumes the subscription's confirmation
            message = message or await pubsub.get_message(timeout=0.2)
        assert message is not None
        assert '"type":"campaign_started"' in message["data"]
        stopped = await harness.service.campaigns.stop(host_caller, merchant, room_id, "flash-1")
        assert stopped.state == "ended"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    with pytest.raises(PermissionDeniedError):
        await harness.service.campaigns.start(viewer(merchant, "fan"), merchant, room_id, "flash-1")


async def test_each_new_subscription_is_an_event_and_asking_again_while_subscribed_is_not(
    harness: Harness,
) -> None:
    merchant, host = unique("m"), unique("host")
    room_id = await scheduled_room(harness, merchant, host, minutes=30)
    reminders = harness.service.reminders
    fan = viewer(merchant, "fan")
    await reminders.subscribe(fan, merchant, SubscriptionTarget.ROOM, room_id)
    await reminders.subscribe(fan, merchant, SubscriptionTarget.ROOM, room_id)
    await reminders.subscribe(fan, merchant, SubscriptionTarget.HOST, host)
    await reminders.unsubscribe(fan, merchant, SubscriptionTarget.ROOM, room_id)
    await reminders.subscribe(fan, merchant, SubscriptionTarget.ROOM, room_id)
    rows = await harness.service.pool.fetch(
        "SELECT stream_id, version, payload FROM events WHERE event_type = $1"
        " AND merchant_id = $2 ORDER BY position",
        pb.ReminderSubscribed.DESCRIPTOR.full_name,
        merchant,
    )
    subscribed = [pb.ReminderSubscribed.FromString(row["payload"]) for row in rows]
    assert [(s.target, s.target_id, s.viewer_id) for s in subscribed] == [
        ("room", room_id, "fan"),
        ("host", host, "fan"),
        ("room", room_id, "fan"),
    ]
    assert [row["version"] for row in rows] == [1, 1, 2]
