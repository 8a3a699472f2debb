"""The append-only event store every service keeps in its own Postgres database.

Invariants (the contract tests in ``services/kit/tests`` hold every store to them):

* ``(stream_id, version)`` is unique and versions of a stream run 1, 2, 3 ... with no gap;
  an append states the version it expects the stream to be at and fails with
  :class:`ConcurrencyError` otherwise, changing nothing.
* ``position`` orders all events of the store; it is gap-free and a reader never sees a
  position before every smaller one is visible. The outbox relay publishes by position.
* An append of several streams is one transaction: all or nothing. Services group-commit
  many commands into one append to make durability cheap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import asyncpg
from google.protobuf.message import Message
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit import metrics
from services.kit.context import MessageContext, current_context
from services.kit.db import DATABASE_OUTAGES, DATABASE_UNAVAILABLE, Connection, committing
from services.kit.errors import ConcurrencyError, OutcomeUnknownError, UnavailableError
from services.kit.ids import new_id
from services.kit.logging import get_logger

T = TypeVar("T")


log = get_logger(__name__)

Item = TypeVar("Item")

SETTLE_LOCK_TIMEOUT = "5s"
"""How long finding out whether a write was recorded waits for an append in flight."""
_CANNOT_TELL: tuple[type[Exception], ...] = (*DATABASE_OUTAGES, asyncpg.LockNotAvailableError)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended: its type is the payload's protobuf full name."""

    event_type: str
    payload: bytes
    event_id: UUID = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, message: Message, occurred_at: datetime | None = None) -> NewEvent:
        return cls(
            event_type=message.DESCRIPTOR.full_name,
            payload=message.SerializeToString(),
            occurred_at=occurred_at or utcnow(),
        )


@dataclass(frozen=True)
class StreamAppend:
    """Events for one stream, valid only if the stream is at ``expected_version`` (0: new)."""

    stream_id: str
    aggregate_type: str
    merchant_id: str
    expected_version: int
    events: Sequence[NewEvent]
    context: MessageContext | None = None
    """What caused the events; by default the context of the task appending. A group
    commit of many requests' events passes each request's own."""


@dataclass(frozen=True)
class StoredEvent:
    position: int
    stream_id: str
    version: int
    event_id: UUID
    event_type: str
    aggregate_type: str
    merchant_id: str
    occurred_at: datetime
    correlation_id: str
    causation_id: str
    trace_context: Mapping[str, str]
    payload: bytes
    actor: str = ""
    """Who asked for the event (the verified caller's subject); empty for the system's own
    work. Kept in the store for the audit trail."""

    def to_envelope(self, producer: str) -> Envelope:
        envelope = Envelope(
            event_id=str(self.event_id),
            event_type=self.event_type,
            aggregate_type=self.aggregate_type,
            aggregate_id=self.stream_id,
            aggregate_version=self.version,
            position=self.position,
            merchant_id=self.merchant_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            trace_context=dict(self.trace_context),
            producer=producer,
            payload=self.payload,
            actor=self.actor,
        )
        envelope.occurred_at.FromDatetime(self.occurred_at)
        return envelope


class EventStore(Protocol):
    """Port of the event store; Postgres in production, in memory for unit tests."""

    async def append(
        self,
        appends: Sequence[StreamAppend],
        *,
        conn: Connection | None = None,
        savepoint: bool = True,
    ) -> list[StoredEvent]:
        """Append atomically; raise ConcurrencyError if any stream is not at its expected
        version. With ``conn`` the append joins the caller's transaction."""
        ...

    async def read_stream(
        self, stream_id: str, after_version: int = 0, *, conn: Connection | None = None
    ) -> list[StoredEvent]:
        """The stream's events with version > after_version, in version order. With
        ``conn`` the read joins the caller's transaction: a writer holding a lock must read
        through its own connection, never wait on the pool for another one (every pooled
        connection may be waiting on that very lock)."""
        ...

    async def read_streams(
        self, stream_ids: Sequence[str], *, conn: Connection | None = None
    ) -> dict[str, list[StoredEvent]]:
        """Several whole streams in one read, as ``read_stream`` reads one: each id asked
        for maps to its events in version order (an unknown one to none)."""
        ...

    async def last_event(
        self, stream_id: str, *, conn: Connection | None = None
    ) -> StoredEvent | None:
        """The stream's latest event (None: the stream has none), read as ``read_stream``
        reads: for an aggregate whose every event carries its state after it, all it takes
        to load it, however long its stream has grown."""
        ...

    async def read_all(self, after_position: int, limit: int = 1000) -> list[StoredEvent]:
        """Events with position > after_position, in position order, at most ``limit``."""
        ...

    async def last_position(self) -> int: ...


def _check_versions(
    appends: Sequence[StreamAppend], current: Mapping[str, int]
) -> list[tuple[StreamAppend, int]]:
    """The first version of each append, after checking every expectation (pure)."""
    heads = dict(current)
    planned: list[tuple[StreamAppend, int]] = []
    for append in appends:
        head = heads.get(append.stream_id, 0)
        if append.expected_version != head:
            raise ConcurrencyError(
                f"stream {append.stream_id} is at version {head}, "
                f"expected {append.expected_version}"
            )
        planned.append((append, head + 1))
        heads[append.stream_id] = head + len(append.events)
    return planned


def _stored(
    planned: Sequence[tuple[StreamAppend, int]], first_position: int, default: MessageContext
) -> list[StoredEvent]:
    """The planned appends as stored from ``first_position`` on; ``default``: the context of
    an append that brings none."""
    stored: list[StoredEvent] = []
    position = first_position
    for append, first_version in planned:
        context = append.context or default
        trace = dict(context.trace_context)  # one dict per append, shared by its events
        for offset, event in enumerate(append.events):
            stored.append(
                StoredEvent(
                    position=position,
                    stream_id=append.stream_id,
                    version=first_version + offset,
                    event_id=event.event_id,
                    event_type=event.event_type,
                    aggregate_type=append.aggregate_type,
                    merchant_id=append.merchant_id,
                    occurred_at=event.occurred_at,
                    correlation_id=context.correlation_id,
                    causation_id=context.causation_id,
                    trace_context=trace,
                    payload=event.payload,
                    actor=context.actor,
                )
            )
            position += 1
    return stored


NOTIFY_CHANNEL = "events_appended"

_APPEND = """
WITH taken AS (
    UPDATE event_position SET last = last + $13 RETURNING last, pg_notify($14, last::text)
), inserted AS (
    INSERT INTO events (position, stream_id, version, event_id, event_type, aggregate_type,
                        merchant_id, occurred_at, correlation_id, causation_id, trace_context,
                        payload, actor)
    SELECT taken.last - $13 + e.ord, e.stream_id, e.version, e.event_id, e.event_type,
           e.aggregate_type, e.merchant_id, e.occurred_at, e.correlation_id, e.causation_id,
           e.trace_context, e.payload, e.actor
    FROM taken, unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[],
                       $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::jsonb[],
                       $11::bytea[], $12::text[])
         WITH ORDINALITY AS e(stream_id, version, event_id, event_type, aggregate_type,
                              merchant_id, occurred_at, correlation_id, causation_id,
                              trace_context, payload, actor, ord)
)
SELECT last FROM taken
"""
"""One round trip takes ``$13`` positions and inserts the events at them, in their order
(a data-modifying statement in a WITH always runs to completion). The row lock on
event_position serialises appenders until commit: that is what makes positions gap-free and
visible in order, and the version check race-free (the versions' unique index refuses a
stream that moved on meanwhile). The notification is delivered at commit, to wake the relay."""


def _columns(
    planned: Sequence[tuple[StreamAppend, int]], default: MessageContext
) -> list[list[Any]]:
    """``_APPEND``'s twelve arrays, the events in order (a trace context encoded once per
    append: a group commit's events share few)."""
    columns: list[list[Any]] = [[] for _ in range(12)]
    (streams, versions, ids, types, aggregates, merchants, occurred) = columns[:7]
    (correlations, causations, traces, payloads, actors) = columns[7:]
    for append, first_version in planned:
        context = append.context or default
        trace = json.dumps(dict(context.trace_context)) if context.trace_context else "{}"
        for offset, event in enumerate(append.events):
            streams.append(append.stream_id)
            versions.append(first_version + offset)
            ids.append(event.event_id)
            types.append(event.event_type)
            aggregates.append(append.aggregate_type)
            merchants.append(append.merchant_id)
            occurred.append(event.occurred_at)
            correlations.append(context.correlation_id)
            causations.append(context.causation_id)
            traces.append(trace)
            payloads.append(event.payload)
            actors.append(context.actor)
    return columns


EVENT_COLUMNS = """position, stream_id, version, event_id, event_type, aggregate_type, merchant_id,
              occurred_at, correlation_id, causation_id, trace_context, payload, actor"""


def stored_event_from_row(row: asyncpg.Record) -> StoredEvent:
    """A row of ``SELECT {EVENT_COLUMNS} FROM events`` as a stored event."""
    return StoredEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        version=row["version"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        aggregate_type=row["aggregate_type"],
        merchant_id=row["merchant_id"],
        occurred_at=row["occurred_at"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        trace_context=json.loads(row["trace_context"]),
        payload=row["payload"],
        actor=row["actor"],
    )


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool, service: str) -> None:
        self._pool = pool
        self._service = service

    async def append(
        self,
        appends: Sequence[StreamAppend],
        *,
        conn: Connection | None = None,
        savepoint: bool = True,
    ) -> list[StoredEvent]:
        """With ``conn`` the append joins the caller's transaction, inside a savepoint so that
        a refused append leaves that transaction usable; ``savepoint=False`` saves the two
        round trips when the caller rolls back on any error anyway."""
        if not any(a.events for a in appends):
            return []
        if conn is not None:
            if not savepoint:
                return await self._append(conn, appends)
            async with conn.transaction():
                return await self._append(conn, appends)
        async with self._pool.acquire() as own, own.transaction():
            return await self._append(own, appends)

    async def append_ids(self, appends: Sequence[StreamAppend], *, conn: Connection) -> list[UUID]:
        """Append in the caller's transaction on ``conn`` without a savepoint (the caller
        rolls back on any error) and return the ids of the events appended, in order. What
        a group commit needs (:meth:`settled_batch` settles a lost COMMIT by those ids),
        without building a :class:`StoredEvent` per event: ~3 µs each, a few per cent of a
        reservation's CPU on the hot path (docs/benchmarks.md)."""
        if not any(a.events for a in appends):
            return []
        await self._insert(conn, appends)
        return [event.event_id for append in appends for event in append.events]

    async def _append(self, conn: Connection, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        planned, first, context = await self._insert(conn, appends)
        return _stored(planned, first, context)

    async def _insert(
        self, conn: Connection, appends: Sequence[StreamAppend]
    ) -> tuple[list[tuple[StreamAppend, int]], int, MessageContext]:
        """The events inserted at new positions: each append with its first version, the
        first position taken and the context of the appends that bring none."""
        count = sum(len(a.events) for a in appends)
        # Only streams expected to exist need their head read: for a new one, the unique
        # (stream_id, version) index refuses the insert if it exists after all.
        existing = sorted({a.stream_id for a in appends if a.expected_version > 0})
        rows = (
            await conn.fetch(
                "SELECT stream_id, max(version) AS head FROM events"
                " WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
                existing,
            )
            if existing
            else []
        )
        try:
            planned = _check_versions(appends, {r["stream_id"]: r["head"] for r in rows})
        except ConcurrencyError:
            metrics.APPEND_CONFLICTS.labels(self._service).inc()
            raise
        context = current_context()
        try:
            last = await conn.fetchval(_APPEND, *_columns(planned, context), count, NOTIFY_CHANNEL)
        except asyncpg.UniqueViolationError as error:
            metrics.APPEND_CONFLICTS.labels(self._service).inc()
            raise ConcurrencyError(
                f"stream moved on or event already stored: {error.detail}"
            ) from error
        metrics.EVENTS_APPENDED.labels(self._service).inc(count)
        return planned, last - count + 1, context

    async def read_stream(
        self, stream_id: str, after_version: int = 0, *, conn: Connection | None = None
    ) -> list[StoredEvent]:
        rows = await (conn or self._pool).fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2"  # noqa: S608
            " ORDER BY version",
            stream_id,
            after_version,
        )
        return [stored_event_from_row(r) for r in rows]

    async def read_streams(
        self, stream_ids: Sequence[str], *, conn: Connection | None = None
    ) -> dict[str, list[StoredEvent]]:
        found: dict[str, list[StoredEvent]] = {stream_id: [] for stream_id in stream_ids}
        rows = await (conn or self._pool).fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1::text[])"  # noqa: S608
            " ORDER BY stream_id, version",
            list(found),
        )
        for row in rows:
            event = stored_event_from_row(row)
            found[event.stream_id].append(event)
        return found

    async def last_event(
        self, stream_id: str, *, conn: Connection | None = None
    ) -> StoredEvent | None:
        row = await (conn or self._pool).fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1"  # noqa: S608
            " ORDER BY version DESC LIMIT 1",
            stream_id,
        )
        return None if row is None else stored_event_from_row(row)

    async def read_all(self, after_position: int, limit: int = 1000) -> list[StoredEvent]:
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1"  # noqa: S608
            " ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
        return [stored_event_from_row(r) for r in rows]

    async def last_position(self) -> int:
        value: int = await self._pool.fetchval("SELECT last FROM event_position")
        return value

    async def settled_transaction(
        self,
        connection: AbstractAsyncContextManager[Connection],
        statements: Callable[[Connection], Awaitable[list[StoredEvent]]],
    ) -> list[StoredEvent]:
        """Run ``statements`` (which append through this store and return what they
        appended) in one transaction on the connection ``connection`` lends; its events. A
        COMMIT that loses the database is settled (:meth:`settle`): the events when the
        transaction was recorded after all, else UnavailableError or OutcomeUnknownError."""
        stored: list[StoredEvent] = []

        async def run(conn: Connection) -> list[UUID]:
            nonlocal stored
            stored = await statements(conn)
            return [event.event_id for event in stored]

        found = await self._commit_settled(connection, run)
        return stored if found is None else found

    async def settled_batch(
        self,
        connection: AbstractAsyncContextManager[Connection],
        items: Sequence[Item],
        statements: Callable[
            [Connection, Sequence[Item], list[BaseException | None]], Awaitable[Sequence[UUID]]
        ],
    ) -> list[BaseException | None]:
        """A group commit of ``items`` in one transaction, settled as
        :meth:`settled_transaction` settles it: ``statements`` appends through this store
        (:meth:`append_ids`), puts the reason each refused item was not recorded at its
        index in the list it is given, and returns the ids of the events appended. Per
        item: None when recorded, or its refusal."""
        refusals: list[BaseException | None] = [None] * len(items)
        await self._commit_settled(connection, lambda conn: statements(conn, items, refusals))
        return refusals

    async def _commit_settled(
        self,
        connection: AbstractAsyncContextManager[Connection],
        statements: Callable[[Connection], Awaitable[Sequence[UUID]]],
    ) -> list[StoredEvent] | None:
        """Run ``statements`` (which return the ids of the events they appended) in one
        transaction; None when COMMIT answered, the events found when it was lost but the
        transaction was recorded after all (else :meth:`settle` raises)."""
        appended: Sequence[UUID] = ()
        try:
            async with connection as conn, committing(conn):
                appended = await statements(conn)
        except OutcomeUnknownError as unknown:
            return await self.settle(unknown, appended)
        return None

    async def recorded(self, event_ids: Sequence[UUID]) -> list[StoredEvent]:
        """The events among ``event_ids`` that are stored, in position order, read once no
        append is in flight: every append holds the position row's lock until its
        transaction ends, so waiting for that lock (at most ``SETTLE_LOCK_TIMEOUT``) waits
        out an append whose COMMIT the server is still working on."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{SETTLE_LOCK_TIMEOUT}'")
            await conn.execute("SELECT last FROM event_position FOR SHARE")
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[])"  # noqa: S608
                " ORDER BY position",
                list(event_ids),
            )
        return [stored_event_from_row(r) for r in rows]

    async def settle(
        self, unknown: OutcomeUnknownError, event_ids: Sequence[UUID]
    ) -> list[StoredEvent]:
        """After a write that appended ``event_ids`` failed with ``unknown``: its stored
        events when it was recorded after all (the writer goes on as if COMMIT had answered);
        :class:`UnavailableError` when it was not (nothing was written: what it stood for can
        be undone); ``unknown`` again when the database cannot tell either."""
        if not event_ids:  # the write appended nothing: there is nothing it could have done
            raise UnavailableError(DATABASE_UNAVAILABLE) from unknown
        try:
            found = await self.recorded(event_ids)
        except _CANNOT_TELL as error:
            log.warning("outcome of a write still unknown", error=repr(error))
            raise unknown from error
        if not found:
            raise UnavailableError(DATABASE_UNAVAILABLE) from unknown
        log.info("write found recorded after its commit failed", events=len(found))
        return found


class InMemoryEventStore:
    """The same contract without a database, for unit tests of application handlers."""

    def __init__(self) -> None:
        self._events: list[StoredEvent] = []
        self._lock = asyncio.Lock()

    async def append(
        self,
        appends: Sequence[StreamAppend],
        *,
        conn: Connection | None = None,
        savepoint: bool = True,
    ) -> list[StoredEvent]:
        if not any(a.events for a in appends):
            return []
        async with self._lock:
            heads: dict[str, int] = {}
            for event in self._events:
                heads[event.stream_id] = event.version
            planned = _check_versions(appends, heads)
            known = {e.event_id for e in self._events}
            stored = _stored(planned, len(self._events) + 1, current_context())
            ids = [e.event_id for e in stored]
            if len(set(ids)) != len(ids) or known.intersection(ids):
                raise ConcurrencyError("event already stored")
            self._events.extend(stored)
            return stored

    async def read_stream(
        self, stream_id: str, after_version: int = 0, *, conn: Connection | None = None
    ) -> list[StoredEvent]:
        return [e for e in self._events if e.stream_id == stream_id and e.version > after_version]

    async def read_streams(
        self, stream_ids: Sequence[str], *, conn: Connection | None = None
    ) -> dict[str, list[StoredEvent]]:
        return {stream_id: await self.read_stream(stream_id) for stream_id in stream_ids}

    async def last_event(
        self, stream_id: str, *, conn: Connection | None = None
    ) -> StoredEvent | None:
        events = await self.read_stream(stream_id, conn=conn)
        return events[-1] if events else None

    async def read_all(self, after_position: int, limit: int = 1000) -> list[StoredEvent]:
        return self._events[after_position : after_position + limit]

    async def last_position(self) -> int:
        return len(self._events)


async def retry_on_conflict(operation: Callable[[], Awaitable[T]], attempts: int = 10) -> T:
    """Run a load-decide-append operation again when it loses a concurrency race.

    Safe only for operations that reload their aggregate on every attempt.
    """
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.005, max=0.1),
        retry=retry_if_exception_type(ConcurrencyError),
        reraise=True,
    ):
        with attempt:
            return await operation()
    raise RuntimeError("unreachable: the last attempt either returns or raises")
