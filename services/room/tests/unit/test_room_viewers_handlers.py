"""The join path with in-memory fakes of presence and the visit log: a join is acknowledged
only once its event is durable, and a join whose event fails is taken out of presence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.kit.errors import UnavailableError
from services.room.application.ports import (
    Departure,
    JoinAttempt,
    JoinDecision,
    JoinOutcome,
    PushMessage,
)
from services.room.application.viewers import Viewers
from services.room.domain.room import Room, RoomNotFoundError, RoomState
from services.room.domain.viewers import (
    JoinRoom,
    RoomNotLiveError,
    ViewerFiguresNow,
    ViewerJoined,
    ViewerLeft,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


class FakeRooms:
    def __init__(self, *rooms: Room) -> None:
        self.rooms = {(r.merchant_id, r.room_id): r for r in rooms}

    async def load(self, merchant_id: str, room_id: str) -> Room:
        if (merchant_id, room_id) not in self.rooms:
            raise RoomNotFoundError(f"room {room_id} not found")
        return self.rooms[(merchant_id, room_id)]


class FakePresence:
    def __init__(self) -> None:
        self.open_rooms: set[tuple[str, str]] = set()
        self.visits: dict[tuple[str, str, str], str] = {}

    async def join_many(self, attempts: Sequence[JoinAttempt]) -> list[JoinDecision]:
        decisions = []
        for a in attempts:
            key = (a.merchant_id, a.room_id, a.viewer_id)
            if (a.merchant_id, a.room_id) not in self.open_rooms:
                decisions.append(JoinDecision(JoinOutcome.NOT_LIVE))
            elif key in self.visits:
                decisions.append(JoinDecision(JoinOutcome.PRESENT, self.visits[key]))
            else:
                self.visits[key] = a.visit_id
                decisions.append(JoinDecision(JoinOutcome.JOINED, a.visit_id))
        return decisions

    async def forget_joins(self, attempts: Sequence[JoinAttempt]) -> None:
        for a in attempts:
            self.visits.pop((a.merchant_id, a.room_id, a.viewer_id), None)

    async def open(self, merchant_id: str, room_id: str) -> None:
        self.open_rooms.add((merchant_id, room_id))

    async def figures(
        self, merchant_id: str, room_id: str, since: datetime, now: datetime
    ) -> ViewerFiguresNow:
        count = sum(1 for m, r, _ in self.visits if (m, r) == (merchant_id, room_id))
        return ViewerFiguresNow(count, count, count, 0)

    async def leave(
        self, merchant_id: str, room_id: str, viewer_id: str, at: datetime
    ) -> Departure | None:
        visit = self.visits.pop((merchant_id, room_id, viewer_id), None)
        return None if visit is None else Departure(viewer_id, visit, NOW, at)


class FakeVisits:
    def __init__(self) -> None:
        self.joined_events: list[ViewerJoined] = []
        self.left_events: list[ViewerLeft] = []
        self.down = False

    async def joined(self, merchant_id: str, event: ViewerJoined) -> None:
        if self.down:
            raise UnavailableError("the database is unavailable; retry later")
        self.joined_events.append(event)

    async def left(self, merchant_id: str, event: ViewerLeft) -> None:
        self.left_events.append(event)


class FakePush:
    async def publish(self, merchant_id: str, messages: Sequence[PushMessage]) -> None:
        return None


def viewers(*rooms: Room) -> tuple[Viewers, FakePresence, FakeVisits]:
    presence, visits = FakePresence(), FakeVisits()
    handler = Viewers(
        FakeRooms(*rooms),  # type: ignore[arg-type]
        presence,  # type: ignore[arg-type]
        visits,
        FakePush(),
        clock=lambda: NOW,
        timeout=timedelta(seconds=60),
    )
    return handler, presence, visits


LIVE = Room("m1", "r1", host_id="h", state=RoomState.LIVE, version=2)


async def test_the_first_join_after_going_live_opens_presence_from_the_store() -> None:
    handler, presence, visits = viewers(LIVE)
    result = await handler.join(JoinRoom("m1", "r1", "fan", "app"))
    assert result.new_visit
    assert ("m1", "r1") in presence.open_rooms
    assert [e.visit_id for e in visits.joined_events] == [result.visit_id]


async def test_a_join_whose_event_cannot_be_written_is_not_counted() -> None:
    handler, presence, visits = viewers(LIVE)
    visits.down = True
    with pytest.raises(UnavailableError):
        await handler.join(JoinRoom("m1", "r1", "fan", "app"))
    assert presence.visits == {}
    visits.down = False
    assert (await handler.join(JoinRoom("m1", "r1", "fan", "app"))).new_visit


async def test_a_scheduled_room_is_not_live_to_join() -> None:
    handler, _, _ = viewers(Room("m1", "r1", host_id="h", state=RoomState.SCHEDULED, version=1))
    with pytest.raises(RoomNotLiveError):
        await handler.join(JoinRoom("m1", "r1", "fan", "app"))


async def test_leaving_records_the_watch_time_once() -> None:
    handler, _, visits = viewers(LIVE)
    await handler.join(JoinRoom("m1", "r1", "fan", "app"))
    assert await handler.leave("m1", "r1", "fan") == 0  # the fake clock stands still
    assert await handler.leave("m1", "r1", "fan") == 0
    assert len(visits.left_events) == 1
