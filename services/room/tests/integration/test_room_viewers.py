"""Viewers against the real Postgres and Redis: a join storm is counted exactly and costs
few transactions; every new visit is a durable ViewerJoined carrying its share code, entry
and channel; leaving and timing out close the visit with its watch time; joining a room
that is not live is refused clearly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest

from livecommerce.room.v1 import events_pb2 as pb
from services.kit.errors import UnavailableError
from services.kit.identity import Role
from services.kit.testing import unique
from services.room.adapters.presence import RedisPresence, room_key
from services.room.adapters.push import RedisPush
from services.room.adapters.rooms import PostgresRooms
from services.room.adapters.visits import GroupCommittedVisits
from services.room.application.ports import VisitLog
from services.room.application.viewers import Viewers
from services.room.bootstrap import RoomService
from services.room.domain.room import RoomNotFoundError, ScheduleRoom
from services.room.domain.viewers import (
    InvalidJoinError,
    JoinRoom,
    NotInRoomError,
    RoomNotLiveError,
    ViewerJoined,
    ViewerLeft,
)
from services.room.tests.conftest import Harness

JOINED = pb.ViewerJoined.DESCRIPTOR.full_name
LEFT = pb.ViewerLeft.DESCRIPTOR.full_name


async def live_room(harness: Harness, merchant: str, *, start: bool = True) -> str:
    room_id = unique("room")
    operator = harness.issuer_caller(merchant, Role.OPERATOR)
    await harness.service.rooms.schedule(
        operator,
        ScheduleRoom(
            merchant,
            room_id,
            unique("host"),
            "Live",
            "https://x.example/c.jpg",
            ("app",),
            None,
            timedelta(hours=1),
        ),
    )
    if start:
        await harness.service.rooms.start(operator, merchant, room_id)
    return room_id


async def visit_events(service: RoomService, merchant: str, room_id: str, kind: str) -> list[bytes]:
    rows = await service.pool.fetch(
        "SELECT payload FROM events WHERE stream_id LIKE $1 AND event_type = $2",
        f"visit:{merchant}:{room_id}:%",
        kind,
    )
    return [row["payload"] for row in rows]


def join(merchant: str, room_id: str, viewer: str, **extra: str) -> JoinRoom:
    return JoinRoom(merchant, room_id, viewer, extra.pop("channel", "h5"), **extra)


async def test_a_join_storm_is_counted_exactly_in_few_transactions(harness: Harness) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    viewers = harness.service.viewers
    batches_before = viewers._decide.batches
    results = await asyncio.gather(
        *(viewers.join(join(merchant, room_id, f"v{i}")) for i in range(400))
    )
    assert all(r.new_visit for r in results)
    assert len({r.visit_id for r in results}) == 400
    figures = await viewers.figures(merchant, room_id)
    assert (figures.concurrent, figures.peak) == (400, 400)
    assert abs(figures.unique - 400) <= 8  # HyperLogLog: about 0.8 % standard error
    assert len(await visit_events(harness.service, merchant, room_id, JOINED)) == 400
    assert viewers._decide.batches - batches_before <= 20


async def test_viewer_joined_carries_share_code_entry_channel_and_device(
    harness: Harness,
) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    await harness.service.viewers.join(
        join(
            merchant,
            room_id,
            "fan-1",
            channel="mini_program",
            share_code="CARD-77",
            entry="invitation_card",
            device_id="dev-9",
        )
    )
    [payload] = await visit_events(harness.service, merchant, room_id, JOINED)
    event = pb.ViewerJoined.FromString(payload)
    assert (event.viewer_id, event.channel, event.share_code, event.entry, event.device_id) == (
        "fan-1",
        "mini_program",
        "CARD-77",
        "invitation_card",
        "dev-9",
    )
    assert event.room_id == room_id
    assert event.visit_id


async def test_joining_again_while_present_is_not_a_new_visit(harness: Harness) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    first = await harness.service.viewers.join(join(merchant, room_id, "fan"))
    again = await harness.service.viewers.join(join(merchant, room_id, "fan"))
    assert (again.new_visit, again.visit_id) == (False, first.visit_id)
    assert len(await visit_events(harness.service, merchant, room_id, JOINED)) == 1


async def test_joining_a_room_that_is_not_live_or_unknown_is_refused(harness: Harness) -> None:
    merchant = unique("m")
    scheduled = await live_room(harness, merchant, start=False)
    with pytest.raises(RoomNotLiveError, match="scheduled"):
        await harness.service.viewers.join(join(merchant, scheduled, "fan"))
    with pytest.raises(RoomNotFoundError):
        await harness.service.viewers.join(join(merchant, unique("nowhere"), "fan"))
    with pytest.raises(InvalidJoinError):
        await harness.service.viewers.join(join(merchant, scheduled, "fan", channel="tv"))


async def test_presence_lost_from_redis_is_reopened_from_the_store(harness: Harness) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    namespace = harness.service.settings.redis_namespace
    await harness.service.redis.delete(room_key(namespace, merchant, room_id, "live"))
    result = await harness.service.viewers.join(join(merchant, room_id, "fan"))
    assert result.new_visit


async def test_leaving_closes_the_visit_with_its_watch_time(harness: Harness) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    viewers = harness.service.viewers
    await viewers.join(join(merchant, room_id, "fan"))
    harness.clock.advance(90)
    assert await viewers.leave(merchant, room_id, "fan") == 90
    assert await viewers.leave(merchant, room_id, "fan") == 0
    [payload] = await visit_events(harness.service, merchant, room_id, LEFT)
    left = pb.ViewerLeft.FromString(payload)
    assert (left.watched_seconds, left.reason) == (90, "left")
    figures = await viewers.figures(merchant, room_id)
    assert (figures.concurrent, figures.unique, figures.peak, figures.watched_seconds) == (
        0,
        1,
        1,
        90,
    )


async def test_viewers_without_heartbeats_time_out_and_others_stay(harness: Harness) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    viewers = harness.service.viewers
    await viewers.join(join(merchant, room_id, "quiet"))
    await viewers.join(join(merchant, room_id, "active"))
    harness.clock.advance(40)
    await viewers.heartbeat(merchant, room_id, "active")
    harness.clock.advance(30)  # quiet: 70 s unseen (timeout 60); active: 30 s
    assert await viewers.sweep() >= 1
    assert await viewers.present(merchant, room_id) == ["active"]
    [payload] = await visit_events(harness.service, merchant, room_id, LEFT)
    assert pb.ViewerLeft.FromString(payload).reason == "timed_out"
    with pytest.raises(NotInRoomError):
        await viewers.heartbeat(merchant, room_id, "quiet")


async def test_ending_the_room_lets_everyone_leave_and_records_the_figures(
    harness: Harness,
) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    operator = harness.issuer_caller(merchant, Role.OPERATOR)
    for viewer in ("a", "b", "c"):
        await harness.service.viewers.join(join(merchant, room_id, viewer))
    harness.clock.advance(10)
    room = await harness.service.rooms.end(operator, merchant, room_id)
    assert (room.figures.peak_viewers, room.figures.unique_viewers) == (3, 3)
    assert room.figures.watched_seconds == 30
    assert len(await visit_events(harness.service, merchant, room_id, LEFT)) == 3
    with pytest.raises(RoomNotLiveError):
        await harness.service.viewers.join(join(merchant, room_id, "late"))


@dataclass
class DatabaseDownForDepartures:
    """The real visit log, except that ViewerLeft cannot be written while ``down``."""

    real: VisitLog
    down: bool = True

    async def joined(self, merchant_id: str, event: ViewerJoined) -> None:
        await self.real.joined(merchant_id, event)

    async def left(self, merchant_id: str, event: ViewerLeft) -> None:
        if self.down:
            raise UnavailableError("the database is unavailable")
        await self.real.left(merchant_id, event)


async def test_a_departure_that_cannot_be_recorded_is_recorded_by_a_later_sweep(
    harness: Harness,
) -> None:
    merchant = unique("m")
    room_id = await live_room(harness, merchant)
    service, settings = harness.service, harness.service.settings
    visits = DatabaseDownForDepartures(
        GroupCommittedVisits(service.pool, service.store, max_batch=64)
    )
    viewers = Viewers(
        PostgresRooms(service.pool, service.store, reminder_lead=timedelta(minutes=5)),
        RedisPresence(
            service.redis, namespace=settings.redis_namespace, retention=timedelta(days=1)
        ),
        visits,
        RedisPush(service.redis, prefix=settings.push_channel_prefix),
        clock=harness.clock,
        timeout=timedelta(seconds=settings.presence_timeout_seconds),
    )
    await viewers.join(join(merchant, room_id, "fan"))
    harness.clock.advance(45)

    assert await viewers.leave(merchant, room_id, "fan") == 45
    assert await visit_events(service, merchant, room_id, LEFT) == []
    await viewers.sweep()  # still down: parked again
    assert await visit_events(service, merchant, room_id, LEFT) == []

    visits.down = False
    await viewers.sweep()
    [payload] = await visit_events(service, merchant, room_id, LEFT)
    left = pb.ViewerLeft.FromString(payload)
    assert (left.viewer_id, left.watched_seconds, left.reason) == ("fan", 45, "left")
    assert await viewers.record_parked() == 0
    await viewers.sweep()
    assert len(await visit_events(service, merchant, room_id, LEFT)) == 1
