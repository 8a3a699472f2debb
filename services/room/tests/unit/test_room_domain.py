"""The room aggregate: schedules, its life, the line-up and pinning, moderation; and its
events, which rebuild it exactly (through protobuf and through the stored snapshot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.kit.eventstore import NewEvent, StoredEvent
from services.room.adapters import codec
from services.room.adapters.rooms import room_of, snapshot_of
from services.room.domain.room import (
    InvalidRoomError,
    ProductNotInLineupError,
    ProductPinned,
    ProductUnpinned,
    RescheduleRoom,
    Room,
    RoomEvent,
    RoomState,
    RoomStateError,
    ScheduleInPastError,
    ScheduleRoom,
    ViewerFigures,
    schedule_room,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def command(**changes: object) -> ScheduleRoom:
    values: dict[str, object] = {
        "merchant_id": "m1",
        "room_id": "r1",
        "host_id": "h1",
        "title": "  Spring sale  ",
        "cover_url": "https://cdn.example.com/c.jpg",
        "channels": ("app", "h5", "app"),
        "starts_at": NOW + timedelta(hours=1),
        "duration": timedelta(hours=2),
    }
    values.update(changes)
    return ScheduleRoom(**values)  # type: ignore[arg-type]


def scheduled(**changes: object) -> tuple[Room, list[RoomEvent]]:
    event = schedule_room(command(**changes), NOW)
    return Room("m1", "r1").apply(event), [event]


def live(*skus: str) -> tuple[Room, list[RoomEvent]]:
    room, events = scheduled(starts_at=None)
    room = run(room, events, [room.start(NOW)])
    for sku in skus:
        room = run(room, events, room.add_product(sku))
    return room, events


def run(room: Room, events: list[RoomEvent], new: list[RoomEvent]) -> Room:
    for event in new:
        events.append(event)
        room = room.apply(event)
    return room


def test_a_schedule_is_cleaned_and_books_its_slot() -> None:
    room, _ = scheduled()
    assert room.title == "Spring sale"
    assert room.channels == ("app", "h5")
    assert (room.starts_at, room.ends_at) == (NOW + timedelta(hours=1), NOW + timedelta(hours=3))
    assert room.state is RoomState.SCHEDULED


def test_a_schedule_without_a_start_starts_now_and_a_past_one_is_refused() -> None:
    assert schedule_room(command(starts_at=None), NOW).starts_at == NOW
    assert schedule_room(command(starts_at=NOW - timedelta(seconds=30)), NOW).starts_at == NOW
    with pytest.raises(ScheduleInPastError):
        schedule_room(command(starts_at=NOW - timedelta(minutes=5)), NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"title": " "},
        {"title": "x" * 101},
        {"cover_url": "javascript:alert(1)"},
        {"channels": ()},
        {"channels": ("tv",)},
        {"duration": timedelta(seconds=30)},
        {"duration": timedelta(hours=25)},
        {"starts_at": datetime(2030, 5, 1, 13, 0)},
    ],
)
def test_refuses_a_schedule_that_is_malformed(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRoomError):
        schedule_room(command(**changes), NOW)


def test_moves_from_scheduled_to_live_to_ended_and_never_back() -> None:
    room, events = scheduled()
    room = run(room, events, [room.start(NOW + timedelta(minutes=50))])
    assert room.state is RoomState.LIVE
    assert room.ends_at == NOW + timedelta(hours=3)  # started early: keeps its planned end
    with pytest.raises(RoomStateError):
        room.start(NOW)
    with pytest.raises(RoomStateError):
        room.reschedule(RescheduleRoom(NOW + timedelta(hours=5)), NOW)
    room = run(room, events, [room.end(NOW + timedelta(hours=2), ViewerFigures(9, 12, 3600))])
    assert room.state is RoomState.ENDED
    assert room.figures == ViewerFigures(9, 12, 3600)
    with pytest.raises(RoomStateError):
        room.end(NOW, ViewerFigures())


def test_a_room_started_after_its_planned_end_keeps_its_duration() -> None:
    room, _ = scheduled()
    late = NOW + timedelta(hours=4)
    assert room.start(late).ends_at == late + timedelta(hours=2)


def test_only_a_scheduled_room_is_rescheduled_or_cancelled() -> None:
    room, events = scheduled()
    moved = room.reschedule(RescheduleRoom(NOW + timedelta(days=1)), NOW)
    assert moved.ends_at - moved.starts_at == timedelta(hours=2)
    room = run(room, events, [room.cancel("rain")])
    assert room.state is RoomState.CANCELLED
    with pytest.raises(RoomStateError):
        room.start(NOW)


def test_pins_one_product_at_a_time_from_the_shelf() -> None:
    room, events = live("A", "B")
    room = run(room, events, room.pin("A"))
    switched = room.pin("B")
    assert switched == [ProductUnpinned("r1", "A"), ProductPinned("r1", "B")]
    room = run(room, events, switched)
    assert room.pin("B") == []
    room = run(room, events, room.set_shelf("B", on_shelf=False))
    assert room.pinned_sku is None
    with pytest.raises(ProductNotInLineupError):
        room.pin("B")
    with pytest.raises(ProductNotInLineupError):
        room.pin("Z")


def test_a_scheduled_room_prepares_its_lineup_but_pins_only_live() -> None:
    room, events = scheduled()
    room = run(room, events, room.add_product("A"))
    assert room.add_product("A") == []
    with pytest.raises(RoomStateError):
        room.pin("A")


def test_reordering_names_every_product_once() -> None:
    room, events = live("A", "B", "C")
    with pytest.raises(InvalidRoomError):
        room.reorder(["A", "B"])
    with pytest.raises(InvalidRoomError):
        room.reorder(["A", "A", "B"])
    room = run(room, events, room.reorder(["C", "A", "B"]))
    assert [i.sku_id for i in room.lineup] == ["C", "A", "B"]


def test_moderation_is_idempotent_and_bounded() -> None:
    room, events = live()
    room = run(room, events, room.mute("troll", "spam"))
    assert room.mute("troll", "again") == []
    room = run(room, events, room.set_banned_words([" Scam ", "scam", "FAKE"]))
    assert room.moderation.banned_words == ("scam", "fake")
    with pytest.raises(InvalidRoomError):
        room.set_slow_mode(7200)
    room = run(room, events, room.unmute("troll"))
    assert room.moderation.muted == frozenset()


def test_events_rebuild_the_room_through_protobuf_and_through_its_snapshot() -> None:
    room, events = live("A", "B", "C")
    room = run(room, events, room.pin("B"))
    room = run(room, events, room.set_shelf("C", on_shelf=False))
    room = run(room, events, room.reorder(["C", "B", "A"]))
    room = run(room, events, room.mute("u1", "rude"))
    room = run(room, events, room.set_banned_words(["scam"]))
    room = run(room, events, room.set_slow_mode(10))
    decoded = [codec.decode_room_event(_stored(codec.encode(e))) for e in events]
    assert decoded == events
    assert Room.replay("m1", "r1", decoded) == room
    assert room_of("m1", "r1", room.version, snapshot_of(room)) == room


def _stored(new: NewEvent) -> StoredEvent:
    return StoredEvent(
        position=1,
        stream_id="room:m1:r1",
        version=1,
        event_id=new.event_id,
        event_type=new.event_type,
        aggregate_type="room",
        merchant_id="m1",
        occurred_at=new.occurred_at,
        correlation_id="c",
        causation_id="c",
        trace_context={},
        payload=new.payload,
    )
