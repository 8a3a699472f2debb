"""What viewers are told when a room changes: room events as push messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.room.application.ports import PushKind, PushMessage
from services.room.domain.room import (
    LineupReordered,
    ProductAddedToLineup,
    ProductPinned,
    ProductRemovedFromLineup,
    ProductShelfChanged,
    ProductUnpinned,
    Room,
    RoomEnded,
    RoomEvent,
    RoomStarted,
    SlowModeChanged,
    UserMuted,
    UserUnmuted,
)

_LINEUP_EVENTS = (
    ProductAddedToLineup,
    ProductRemovedFromLineup,
    LineupReordered,
    ProductShelfChanged,
)


def lineup_data(room: Room) -> list[dict[str, object]]:
    return [{"sku_id": item.sku_id, "on_shelf": item.on_shelf} for item in room.lineup]


def room_messages(room: Room, events: Sequence[RoomEvent], at: datetime) -> list[PushMessage]:
    """The messages ``events`` (already applied to ``room``) mean to the room's viewers.
    Banned words are never pushed (that would publish the list)."""
    messages: list[PushMessage] = []

    def say(kind: PushKind, to: str = "", **data: object) -> None:
        messages.append(PushMessage(kind, room.room_id, at, data, to))

    if any(isinstance(e, _LINEUP_EVENTS) for e in events):
        say(PushKind.LINEUP_CHANGED, lineup=lineup_data(room))
    for event in events:
        match event:
            case RoomStarted():
                say(PushKind.ROOM_STARTED, ends_at=event.ends_at.isoformat())
            case RoomEnded():
                say(PushKind.ROOM_ENDED, ended_at=event.ended_at.isoformat())
            case ProductPinned():
                say(PushKind.PRODUCT_PINNED, sku_id=event.sku_id)
            case ProductUnpinned():
                say(PushKind.PRODUCT_UNPINNED, sku_id=event.sku_id)
            case UserMuted():
                say(PushKind.MODERATION, to=event.user_id, notice="muted", reason=event.reason)
            case UserUnmuted():
                say(PushKind.MODERATION, to=event.user_id, notice="unmuted")
            case SlowModeChanged():
                say(
                    PushKind.MODERATION, notice="slow_mode", interval_seconds=event.interval_seconds
                )
    return messages
