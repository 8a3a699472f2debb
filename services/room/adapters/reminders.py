"""Reminder subscriptions and deliveries in Postgres.

``reminder_deliveries`` has one row per (merchant, room, viewer, kind): owing a reminder
twice inserts nothing. Delivery claims due rows with ``FOR UPDATE SKIP LOCKED`` (any number
of worker replicas), sends them, and in the same transaction marks the sent ones and
appends their ReminderSent (stream ``reminder:...`` at version 1: a second append for the
same reminder would be refused). A channel that fails leaves the row due again later, with
back-off; a channel must treat the reminder id as an idempotency key, since a worker that
dies after sending and before committing sends again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.kit.db import Connection
from services.kit.eventstore import EventStore, StreamAppend, utcnow
from services.room.adapters import codec
from services.room.domain.reminders import (
    Reminder,
    ReminderKind,
    ReminderSent,
    ReminderSubscribed,
    SubscriptionTarget,
    reminder_stream_id,
    subscription_stream_id,
)
from services.room.domain.room import Room

MAX_BACKOFF = timedelta(minutes=10)


class _Claimed:
    def __init__(self, conn: Connection, store: EventStore, reminders: list[Reminder]) -> None:
        self._conn = conn
        self._store = store
        self._reminders = reminders

    @property
    def reminders(self) -> Sequence[Reminder]:
        return self._reminders

    async def settle(self, failures: Mapping[str, str], channel: str, at: datetime) -> None:
        sent = [r for r in self._reminders if r.reminder_id not in failures]
        failed = [r for r in self._reminders if r.reminder_id in failures]
        if sent:
            await self._conn.executemany(
                "UPDATE reminder_deliveries SET sent_at = $5, attempts = attempts + 1"
                " WHERE merchant_id = $1 AND room_id = $2 AND viewer_id = $3 AND kind = $4",
                [(r.merchant_id, r.room_id, r.viewer_id, r.kind.value, at) for r in sent],
            )
            await self._store.append(
                [
                    StreamAppend(
                        stream_id=reminder_stream_id(
                            r.merchant_id, r.room_id, r.viewer_id, r.kind.value
                        ),
                        aggregate_type=codec.AGGREGATE_REMINDER,
                        merchant_id=r.merchant_id,
                        expected_version=0,
                        events=[
                            codec.encode(
                                ReminderSent(r.room_id, r.viewer_id, r.kind, channel, at), at
                            )
                        ],
                    )
                    for r in sent
                ],
                conn=self._conn,
                savepoint=False,
            )
        if failed:
            await self._conn.executemany(
                "UPDATE reminder_deliveries SET attempts = attempts + 1, last_error = $5,"
                " next_attempt_at = $6::timestamptz"
                " + least(make_interval(secs => 2 ^ least(attempts, 12)), $7::interval)"
                " WHERE merchant_id = $1 AND room_id = $2 AND viewer_id = $3 AND kind = $4",
                [
                    (
                        r.merchant_id,
                        r.room_id,
                        r.viewer_id,
                        r.kind.value,
                        failures[r.reminder_id][:2000],
                        at,
                        MAX_BACKOFF,
                    )
                    for r in failed
                ],
            )


def _reminder(row: asyncpg.Record) -> Reminder:
    return Reminder(
        merchant_id=row["merchant_id"],
        room_id=row["room_id"],
        viewer_id=row["viewer_id"],
        kind=ReminderKind(row["kind"]),
        host_id=row["host_id"],
        title=row["title"],
        starts_at=datetime.fromisoformat(row["starts_at"]),
    )


class PostgresReminders:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self._pool = pool
        self._store = store

    async def subscribe(
        self, merchant_id: str, target: SubscriptionTarget, target_id: str, viewer_id: str
    ) -> None:
        """A new subscription records ReminderSubscribed in the same transaction; asking
        again while subscribed records nothing."""
        stream_id = subscription_stream_id(merchant_id, target, target_id, viewer_id)
        async with self._pool.acquire() as conn, conn.transaction():
            added = await conn.fetchval(
                "INSERT INTO reminder_subscriptions (merchant_id, target, target_id, viewer_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                merchant_id,
                target.value,
                target_id,
                viewer_id,
            )
            if not added:
                return
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
            )
            now = utcnow()
            await self._store.append(
                [
                    StreamAppend(
                        stream_id=stream_id,
                        aggregate_type=codec.AGGREGATE_SUBSCRIPTION,
                        merchant_id=merchant_id,
                        expected_version=version,
                        events=[
                            codec.encode(ReminderSubscribed(target, target_id, viewer_id, now), now)
                        ],
                    )
                ],
                conn=conn,
                savepoint=False,
            )

    async def unsubscribe(
        self, merchant_id: str, target: SubscriptionTarget, target_id: str, viewer_id: str
    ) -> None:
        await self._pool.execute(
            "DELETE FROM reminder_subscriptions WHERE merchant_id = $1 AND target = $2"
            " AND target_id = $3 AND viewer_id = $4",
            merchant_id,
            target.value,
            target_id,
            viewer_id,
        )

    async def owe(self, conn: Any, room: Room, kind: ReminderKind) -> int:
        status: str = await conn.execute(
            "INSERT INTO reminder_deliveries (merchant_id, room_id, viewer_id, kind)"
            " SELECT DISTINCT $1, $2, viewer_id, $4 FROM reminder_subscriptions"
            " WHERE merchant_id = $1 AND ((target = 'room' AND target_id = $2)"
            "  OR (target = 'host' AND target_id = $3))"
            " ON CONFLICT DO NOTHING",
            room.merchant_id,
            room.room_id,
            room.host_id,
            kind.value,
        )
        return int(status.rsplit(" ", 1)[-1])

    @asynccontextmanager
    async def claim_due(self, now: datetime, limit: int) -> AsyncIterator[_Claimed]:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT d.merchant_id, d.room_id, d.viewer_id, d.kind, r.host_id,"
                " r.snapshot->>'title' AS title, r.snapshot->>'starts_at' AS starts_at"
                " FROM reminder_deliveries d JOIN rooms r USING (merchant_id, room_id)"
                " WHERE d.sent_at IS NULL AND d.next_attempt_at <= $1"
                " ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
                now,
                limit,
            )
            yield _Claimed(conn, self._store, [_reminder(row) for row in rows])
