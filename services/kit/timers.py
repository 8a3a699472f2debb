"""Durable timers: work due at a time, kept in Postgres, fired once by any replica.

A timer is a row keyed by ``(kind, key)`` (e.g. ``("order-payment-deadline", order_id)``),
scheduled in the caller's transaction so it exists exactly when the state that needs it
does. Workers of any number of replicas claim due rows with ``FOR UPDATE SKIP LOCKED`` and
run the handler inside the same transaction that marks the row fired: the handler's writes
and the firing commit together or not at all. A failing handler is retried later with
back-off; its error is kept on the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.kit import metrics
from services.kit.db import Connection, execute_rows
from services.kit.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Timer:
    kind: str
    key: str
    due_at: datetime
    merchant_id: str
    payload: Mapping[str, Any]
    attempts: int


TimerHandler = Callable[[Timer, Connection], Awaitable[None]]


_SCHEDULE = (
    "INSERT INTO timers (kind, key, due_at, merchant_id, payload) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (kind, key) DO UPDATE SET due_at = $3, payload = $5, fired_at = NULL,"
    " attempts = 0, last_error = NULL"
)


@dataclass(frozen=True)
class TimerSchedule:
    """A timer to schedule (or move): what :func:`schedule_timers` takes."""

    kind: str
    key: str
    due_at: datetime
    merchant_id: str
    payload: Mapping[str, Any] | None = None


async def schedule_timer(
    conn: Connection,
    *,
    kind: str,
    key: str,
    due_at: datetime,
    merchant_id: str,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Schedule or move a timer; a fired timer scheduled again fires again."""
    await schedule_timers(conn, [TimerSchedule(kind, key, due_at, merchant_id, payload)])


async def schedule_timers(conn: Connection, timers: Sequence[TimerSchedule]) -> None:
    """Schedule or move many timers in one round trip (a group commit's batch)."""
    rows = [
        (t.kind, t.key, t.due_at, t.merchant_id, json.dumps(dict(t.payload or {}))) for t in timers
    ]
    await execute_rows(conn, _SCHEDULE, rows)


async def cancel_timer(conn: Connection, *, kind: str, key: str) -> bool:
    """Cancel a pending timer; False if there was none pending, or if it is firing now.

    A timer being fired is locked by its worker's transaction until its handler returns;
    a handler that cancels its own timer through another connection (its work ends what the
    timer waits for) must not wait for that lock, or each would wait for the other. Such a
    timer is left alone: it is marked fired when its handler returns."""
    status = await conn.execute(
        "DELETE FROM timers WHERE ctid IN (SELECT ctid FROM timers WHERE kind = $1"
        " AND key = $2 AND fired_at IS NULL FOR UPDATE SKIP LOCKED)",
        kind,
        key,
    )
    return status != "DELETE 0"


class TimerWorker:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        kind: str,
        handler: TimerHandler,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        max_backoff: timedelta = timedelta(minutes=5),
    ) -> None:
        self._pool = pool
        self._kind = kind
        self._handler = handler
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            fired = await self.fire_due()
            if fired < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._poll_interval)

    async def fire_due(self) -> int:
        """Claim and fire one batch of due timers; return how many were claimed."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT kind, key, due_at, merchant_id, payload, attempts FROM timers"
                " WHERE kind = $1 AND fired_at IS NULL AND due_at <= now()"
                " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                self._kind,
                self._batch_size,
            )
            for row in rows:
                timer = Timer(
                    kind=row["kind"],
                    key=row["key"],
                    due_at=row["due_at"],
                    merchant_id=row["merchant_id"],
                    payload=json.loads(row["payload"]),
                    attempts=row["attempts"],
                )
                await self._fire(conn, timer)
        return len(rows)

    async def _fire(self, conn: Connection, timer: Timer) -> None:
        try:
            async with conn.transaction():  # a savepoint: a failure undoes only this timer
                await self._handler(timer, conn)
                await conn.execute(
                    "UPDATE timers SET fired_at = now(), attempts = attempts + 1"
                    " WHERE kind = $1 AND key = $2",
                    timer.kind,
                    timer.key,
                )
            metrics.TIMERS_FIRED.labels(timer.kind).inc()
        except Exception as error:
            backoff = min(timedelta(seconds=2 ** min(timer.attempts, 16)), self._max_backoff)
            log.warning("timer failed", kind=timer.kind, key=timer.key, error=repr(error))
            await conn.execute(
                "UPDATE timers SET attempts = attempts + 1, last_error = $3,"
                " due_at = now() + $4 WHERE kind = $1 AND key = $2",
                timer.kind,
                timer.key,
                repr(error)[:2000],
                backoff,
            )
