"""Orders in the order event store, with the orders read model, the timers and the
idempotency keys written in the same transaction as each append."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.kit.batching import MicroBatcher
from services.kit.db import Connection, execute_rows
from services.kit.eventstore import PostgresEventStore, StoredEvent, StreamAppend, utcnow
from services.kit.group_commit import GroupCommit
from services.kit.timers import TimerSchedule, cancel_timer, schedule_timers
from services.order.adapters import codec
from services.order.application.ports import Claim, IdempotencyKey, TimerChange
from services.order.domain.order import Order, OrderEvent, OrderStatus

CHECKOUT_LEASE = timedelta(seconds=30)
"""How long a checkout owns its idempotency key before another request may take it over
(far longer than a checkout takes; a checkout that outlives it has crashed)."""


PLACEMENT_BATCH = 128
"""At most this many new orders share one transaction."""


@dataclass(frozen=True)
class _Write:
    """One order's save: its append and the rows that go with it."""

    append: StreamAppend
    order: Order
    """The order with the events applied (what the read model shows)."""
    timers: tuple[TimerChange, ...]
    idempotency: IdempotencyKey | None


class PostgresOrderStore:
    """Saves are one transaction per order, except placements: new orders arriving together
    (a flash-sale checkout burst) are group-committed, many per transaction, so the event
    store's position lock and the commit's WAL flush are paid once per burst instead of
    once per order. A batch that fails on one order is retried one order per transaction
    (:class:`~services.kit.group_commit.GroupCommit`), so only that order fails."""

    def __init__(self, pool: asyncpg.Pool, store: PostgresEventStore) -> None:
        self._pool = pool
        self._store = store
        self._placements: GroupCommit[_Write] = GroupCommit(
            pool,
            store,
            append_of=lambda write: write.append,
            write=_write_rows,
            max_batch=PLACEMENT_BATCH,
            name="order.placements",
        )

    @property
    def events(self) -> PostgresEventStore:
        return self._store

    async def load(self, merchant_id: str, order_id: str) -> Order:
        stored = await self._store.read_stream(Order.stream_id(merchant_id, order_id))
        return Order.replay(merchant_id, order_id, [codec.decode(e) for e in stored])

    async def history(self, merchant_id: str, order_id: str) -> list[StoredEvent]:
        return await self._store.read_stream(Order.stream_id(merchant_id, order_id))

    async def save(
        self,
        order: Order,
        events: Sequence[OrderEvent],
        timers: Sequence[TimerChange] = (),
        idempotency: IdempotencyKey | None = None,
    ) -> Order:
        encoded = []
        after = order
        for event in events:
            encoded.append(codec.encode(event, after))
            after = after.apply(event)
        write = _Write(
            StreamAppend(
                stream_id=Order.stream_id(order.merchant_id, order.order_id),
                aggregate_type=codec.AGGREGATE_ORDER,
                merchant_id=order.merchant_id,
                expected_version=order.version,
                events=encoded,
            ),
            after,
            tuple(timers),
            idempotency,
        )
        if order.version == 0:
            await self._placements.commit(write)
            return after
        async with self._pool.acquire() as conn, conn.transaction():
            # The read model, timers and key first, the append last: appending takes the
            # event store's position lock, which every writer of this database waits for
            # until this transaction commits, so it is held for as short a time as can be.
            # A refused append (the order moved on) rolls all of it back.
            await _write_rows(conn, [write])
            await self._store.append([write.append], conn=conn, savepoint=False)
        return after

    async def merchant_of(self, order_id: str) -> str | None:
        found: str | None = await self._pool.fetchval(
            "SELECT merchant_id FROM orders_view WHERE order_id = $1", order_id
        )
        return found


_PROJECT = (
    "INSERT INTO orders_view (merchant_id, order_id, buyer_id, room_id, status, currency,"
    " total_minor, refunded_minor, group_id, share_code, placed_at, updated_at, version)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)"
    " ON CONFLICT (order_id) DO UPDATE SET status = $5, refunded_minor = $8,"
    " updated_at = $11, version = $12"
)

_KEY_PLACED = (
    "UPDATE idempotency_keys SET state = 'placed'"
    " WHERE merchant_id = $1 AND buyer_id = $2 AND key = $3"
)


async def _write_rows(conn: Connection, writes: Sequence[_Write]) -> None:
    """The read model, the timers and the idempotency keys of the saved orders."""
    now = utcnow()
    await execute_rows(conn, _PROJECT, [_view_row(w.order, now) for w in writes])
    scheduled: list[TimerSchedule] = []
    for write in writes:
        order = write.order
        for timer in write.timers:
            if timer.due_at is None:
                await cancel_timer(conn, kind=timer.kind, key=timer.key)
            else:
                scheduled.append(
                    TimerSchedule(
                        timer.kind,
                        timer.key,
                        timer.due_at,
                        order.merchant_id,
                        {"order_id": order.order_id},
                    )
                )
    await schedule_timers(conn, scheduled)
    keys = [w.idempotency for w in writes if w.idempotency is not None]
    await execute_rows(conn, _KEY_PLACED, [(k.merchant_id, k.buyer_id, k.key) for k in keys])


def _view_row(order: Order, now: datetime) -> tuple[Any, ...]:
    details = order.details
    return (
        order.merchant_id,
        order.order_id,
        details.buyer_id,
        details.room_id,
        order.status.value,
        details.currency,
        details.totals.total,
        order.refunded_amount,
        details.group_id,
        details.share_code,
        now,
        order.version,
    )


_CLAIM_COLUMNS = "order_id, fingerprint, state, failure_status, failure_error, failure_detail"


def _claim(row: asyncpg.Record, mine: bool, *, resumed: bool = False) -> Claim:
    failure = None
    if row["failure_status"] is not None:
        failure = (row["failure_status"], row["failure_error"], row["failure_detail"])
    return Claim(row["order_id"], row["fingerprint"], mine, row["state"], failure, resumed)


class PostgresIdempotencyKeys:
    """Keys are claimed in batches: the first step of every checkout of a burst shares one
    INSERT (and one commit); a key that was already there takes the slower path alone."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = PLACEMENT_BATCH) -> None:
        self._pool = pool
        self._inserting: MicroBatcher[tuple[IdempotencyKey, str, str], Claim | None] = MicroBatcher(
            self._insert_new, max_batch=max_batch, name="order.idempotency_keys"
        )

    async def claim(self, key: IdempotencyKey, fingerprint: str, order_id: str) -> Claim:
        inserted = await self._inserting.submit((key, fingerprint, order_id))
        if inserted is not None:
            return inserted
        async with self._pool.acquire() as conn:
            return await self._claim_existing(conn, key, fingerprint, order_id)

    async def _insert_new(
        self, batch: Sequence[tuple[IdempotencyKey, str, str]]
    ) -> list[Claim | None]:
        """Insert every key that is new; a claim for each inserted, None for the others
        (a key seen before, or twice in this batch: only one of its claims is inserted)."""
        rows = await self._pool.fetch(
            "INSERT INTO idempotency_keys (merchant_id, buyer_id, key, fingerprint, order_id,"  # noqa: S608 - constant column list
            " lease_until) SELECT u.m, u.b, u.k, u.f, u.o, now() + $6 FROM unnest($1::text[],"
            " $2::text[], $3::text[], $4::text[], $5::text[]) AS u(m, b, k, f, o)"
            f" ON CONFLICT DO NOTHING RETURNING merchant_id, buyer_id, key, {_CLAIM_COLUMNS}",
            [k.merchant_id for k, _, _ in batch],
            [k.buyer_id for k, _, _ in batch],
            [k.key for k, _, _ in batch],
            [fingerprint for _, fingerprint, _ in batch],
            [order_id for _, _, order_id in batch],
            CHECKOUT_LEASE,
        )
        won = {(r["merchant_id"], r["buyer_id"], r["key"], r["order_id"]): r for r in rows}
        return [
            _claim(row, mine=True)
            if (row := won.get((k.merchant_id, k.buyer_id, k.key, order_id))) is not None
            else None
            for k, _, order_id in batch
        ]

    async def _claim_existing(
        self, conn: Connection, key: IdempotencyKey, fingerprint: str, order_id: str
    ) -> Claim:
        """The key exists: take it over if its checkout's lease ran out, else report it."""
        taken_over = await conn.fetchrow(
            "UPDATE idempotency_keys SET lease_until = now() + $4"  # noqa: S608 - constant column list
            " WHERE merchant_id = $1 AND buyer_id = $2 AND key = $3"
            " AND state = 'running' AND lease_until < now()"
            f" RETURNING {_CLAIM_COLUMNS}",
            key.merchant_id,
            key.buyer_id,
            key.key,
            CHECKOUT_LEASE,
        )
        if taken_over is not None:
            return _claim(taken_over, mine=True, resumed=True)
        found = await self._get(conn, key)
        if found is None:  # forgotten since the insert was refused: try once more
            return await self.claim(key, fingerprint, order_id)
        return found

    async def fail(self, key: IdempotencyKey, status: int, error: str, detail: str) -> None:
        await self._pool.execute(
            "UPDATE idempotency_keys SET state = 'failed', failure_status = $4,"
            " failure_error = $5, failure_detail = $6"
            " WHERE merchant_id = $1 AND buyer_id = $2 AND key = $3 AND state = 'running'",
            key.merchant_id,
            key.buyer_id,
            key.key,
            status,
            error,
            detail,
        )

    async def forget(self, key: IdempotencyKey) -> None:
        await self._pool.execute(
            "DELETE FROM idempotency_keys"
            " WHERE merchant_id = $1 AND buyer_id = $2 AND key = $3 AND state = 'running'",
            key.merchant_id,
            key.buyer_id,
            key.key,
        )

    async def get(self, key: IdempotencyKey) -> Claim | None:
        async with self._pool.acquire() as conn:
            return await self._get(conn, key)

    async def _get(self, conn: Connection, key: IdempotencyKey) -> Claim | None:
        row = await conn.fetchrow(
            f"SELECT {_CLAIM_COLUMNS} FROM idempotency_keys"  # noqa: S608 - constant column list
            " WHERE merchant_id = $1 AND buyer_id = $2 AND key = $3",
            key.merchant_id,
            key.buyer_id,
            key.key,
        )
        return None if row is None else _claim(row, mine=False)


_VIEW_COLUMNS = (
    "order_id, merchant_id, buyer_id, room_id, status, currency, total_minor,"
    " refunded_minor, placed_at, updated_at"
)


class PostgresOrderViews:
    """Lists of orders from the read model (one order's truth is its stream)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def for_buyer(
        self, buyer_id: str, status: OrderStatus | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT {_VIEW_COLUMNS} FROM orders_view WHERE buyer_id = $1"  # noqa: S608 - constant column list
            " AND ($2::text IS NULL OR status = $2)"
            " ORDER BY placed_at DESC, order_id LIMIT $3 OFFSET $4",
            buyer_id,
            status.value if status else None,
            limit,
            offset,
        )
        return [dict(r) for r in rows]

    async def for_merchant(
        self,
        merchant_id: str,
        room_id: str | None,
        status: OrderStatus | None,
        placed_from: datetime | None,
        placed_until: datetime | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT {_VIEW_COLUMNS} FROM orders_view WHERE merchant_id = $1"  # noqa: S608 - constant column list
            " AND ($2::text IS NULL OR room_id = $2) AND ($3::text IS NULL OR status = $3)"
            " AND ($4::timestamptz IS NULL OR placed_at >= $4)"
            " AND ($5::timestamptz IS NULL OR placed_at < $5)"
            " ORDER BY placed_at DESC, order_id LIMIT $6 OFFSET $7",
            merchant_id,
            room_id,
            status.value if status else None,
            placed_from,
            placed_until,
            limit,
            offset,
        )
        return [dict(r) for r in rows]
