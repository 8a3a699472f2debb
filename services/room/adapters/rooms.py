"""Rooms in Postgres: the events in the event store, and in the same transaction the
room's row (its state as of those events, and the host's booked slot, which the
``host_not_double_booked`` exclusion constraint keeps from overlapping).

The durable timers of a room's reminders follow from its events and are written in the
same transaction too: scheduled or rescheduled moves the lead reminder, going live fires
the live one, a cancel drops the lead one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.kit.db import Connection
from services.kit.errors import AlreadyExistsError, ConcurrencyError
from services.kit.eventstore import EventStore, StreamAppend
from services.kit.timers import cancel_timer, schedule_timer
from services.room.adapters import codec
from services.room.domain.reminders import ReminderKind
from services.room.domain.room import (
    HostDoubleBookedError,
    LineupItem,
    Moderation,
    Room,
    RoomCancelled,
    RoomEvent,
    RoomNotFoundError,
    RoomRescheduled,
    RoomScheduled,
    RoomStarted,
    RoomState,
    ViewerFigures,
)

REMINDER_TIMER = "room-reminder"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def snapshot_of(room: Room) -> dict[str, Any]:
    return {
        "host_id": room.host_id,
        "title": room.title,
        "cover_url": room.cover_url,
        "channels": list(room.channels),
        "starts_at": _iso(room.starts_at),
        "ends_at": _iso(room.ends_at),
        "state": room.state.value,
        "started_at": _iso(room.started_at),
        "ended_at": _iso(room.ended_at),
        "lineup": [[item.sku_id, item.on_shelf] for item in room.lineup],
        "pinned_sku": room.pinned_sku,
        "muted": sorted(room.moderation.muted),
        "banned_words": list(room.moderation.banned_words),
        "slow_mode_seconds": room.moderation.slow_mode_seconds,
        "figures": [
            room.figures.peak_viewers,
            room.figures.unique_viewers,
            room.figures.watched_seconds,
        ],
    }


def room_of(merchant_id: str, room_id: str, version: int, snapshot: dict[str, Any]) -> Room:
    return Room(
        merchant_id=merchant_id,
        room_id=room_id,
        host_id=snapshot["host_id"],
        title=snapshot["title"],
        cover_url=snapshot["cover_url"],
        channels=tuple(snapshot["channels"]),
        starts_at=_at(snapshot["starts_at"]),
        ends_at=_at(snapshot["ends_at"]),
        state=RoomState(snapshot["state"]),
        started_at=_at(snapshot["started_at"]),
        ended_at=_at(snapshot["ended_at"]),
        lineup=tuple(LineupItem(sku, on_shelf) for sku, on_shelf in snapshot["lineup"]),
        pinned_sku=snapshot["pinned_sku"],
        moderation=Moderation(
            muted=frozenset(snapshot["muted"]),
            banned_words=tuple(snapshot["banned_words"]),
            slow_mode_seconds=snapshot["slow_mode_seconds"],
        ),
        figures=ViewerFigures(*snapshot["figures"]),
        version=version,
    )


def _double_booked(room: Room) -> HostDoubleBookedError:
    return HostDoubleBookedError(
        f"host {room.host_id} already has a scheduled or live room overlapping"
        f" {_iso(room.starts_at)} .. {_iso(room.ends_at)}"
    )


class PostgresRooms:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, *, reminder_lead: timedelta) -> None:
        self._pool = pool
        self._store = store
        self._lead = reminder_lead

    async def create(self, merchant_id: str, event: RoomScheduled) -> Room:
        room = Room(merchant_id=merchant_id, room_id=event.room_id).apply(event)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO rooms (merchant_id, room_id, host_id, state, slot, version,"
                    " snapshot) VALUES ($1, $2, $3, $4, tstzrange($5, $6), $7, $8)",
                    merchant_id,
                    room.room_id,
                    room.host_id,
                    room.state.value,
                    room.starts_at,
                    room.ends_at,
                    room.version,
                    json.dumps(snapshot_of(room)),
                )
                await self._append(conn, Room(merchant_id, room.room_id), [event])
                await self._follow(conn, room, [event])
        except asyncpg.UniqueViolationError as error:
            raise AlreadyExistsError(f"room {event.room_id} already exists") from error
        except asyncpg.ExclusionViolationError as error:
            raise _double_booked(room) from error
        return room

    async def load(self, merchant_id: str, room_id: str) -> Room:
        row = await self._pool.fetchrow(
            "SELECT version, snapshot FROM rooms WHERE merchant_id = $1 AND room_id = $2",
            merchant_id,
            room_id,
        )
        if row is None:
            raise RoomNotFoundError(f"room {room_id} not found")
        return room_of(merchant_id, room_id, row["version"], json.loads(row["snapshot"]))

    async def save(self, room: Room, events: Sequence[RoomEvent]) -> Room:
        if not events:
            return room
        after = room
        for event in events:
            after = after.apply(event)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "UPDATE rooms SET state = $3, slot = tstzrange($4, $5), version = $6,"
                    " snapshot = $7, updated_at = now()"
                    " WHERE merchant_id = $1 AND room_id = $2 AND version = $8",
                    room.merchant_id,
                    room.room_id,
                    after.state.value,
                    after.starts_at,
                    after.ends_at,
                    after.version,
                    json.dumps(snapshot_of(after)),
                    room.version,
                )
                if status != "UPDATE 1":
                    raise ConcurrencyError(f"room {room.room_id} moved on; reload and retry")
                await self._append(conn, room, events)
                await self._follow(conn, after, events)
        except asyncpg.ExclusionViolationError as error:
            raise _double_booked(after) from error
        return after

    async def _append(self, conn: Connection, room: Room, events: Sequence[RoomEvent]) -> None:
        await self._store.append(
            [
                StreamAppend(
                    stream_id=Room.stream_id(room.merchant_id, room.room_id),
                    aggregate_type=codec.AGGREGATE_ROOM,
                    merchant_id=room.merchant_id,
                    expected_version=room.version,
                    events=[codec.encode(e) for e in events],
                )
            ],
            conn=conn,
            savepoint=False,
        )

    async def _follow(self, conn: Connection, room: Room, events: Sequence[RoomEvent]) -> None:
        """The reminder timers the events imply."""
        lead_key = reminder_timer_key(room.merchant_id, room.room_id, ReminderKind.LEAD)
        for event in events:
            match event:
                case RoomScheduled() | RoomRescheduled() if self._lead > timedelta(0):
                    await schedule_timer(
                        conn,
                        kind=REMINDER_TIMER,
                        key=lead_key,
                        due_at=event.starts_at - self._lead,
                        merchant_id=room.merchant_id,
                        payload={"room_id": room.room_id, "kind": ReminderKind.LEAD.value},
                    )
                case RoomCancelled():
                    await cancel_timer(conn, kind=REMINDER_TIMER, key=lead_key)
                case RoomStarted():
                    await cancel_timer(conn, kind=REMINDER_TIMER, key=lead_key)
                    await schedule_timer(
                        conn,
                        kind=REMINDER_TIMER,
                        key=reminder_timer_key(room.merchant_id, room.room_id, ReminderKind.LIVE),
                        due_at=event.started_at,
                        merchant_id=room.merchant_id,
                        payload={"room_id": room.room_id, "kind": ReminderKind.LIVE.value},
                    )


def reminder_timer_key(merchant_id: str, room_id: str, kind: ReminderKind) -> str:
    return f"{merchant_id}:{room_id}:{kind.value}"
