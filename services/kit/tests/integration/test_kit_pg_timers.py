"""Durable timers against a real Postgres: scheduled in the caller's transaction, fired once
by whichever worker claims them, retried with back-off when the handler fails."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.kit.db import Connection, create_pool
from services.kit.testing import TestDatabase, unique
from services.kit.timers import Timer, TimerWorker, cancel_timer, schedule_timer

DEADLINE_SECONDS = 15.0


def past() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


class RecordingHandler:
    """Records each firing in the worker's transaction and in memory; may fail on purpose."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.calls: Counter[str] = Counter()
        self.failing = failing

    async def __call__(self, timer: Timer, conn: Connection) -> None:
        self.calls[timer.key] += 1
        await conn.execute(
            "INSERT INTO fired (kind, key, payload) VALUES ($1, $2, $3)",
            timer.kind,
            timer.key,
            dict(timer.payload).get("n", -1),
        )
        if timer.key in self.failing:
            raise RuntimeError(f"cannot handle {timer.key}")


@pytest.fixture
async def fired_table(database: TestDatabase) -> asyncpg.Pool:
    await database.pool.execute(
        "CREATE TABLE fired (kind text NOT NULL, key text NOT NULL, payload integer NOT NULL)"
    )
    return database.pool


async def timer_row(pool: asyncpg.Pool, kind: str, key: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT due_at, attempts, last_error, fired_at, due_at > now() AS in_future"
        " FROM timers WHERE kind = $1 AND key = $2",
        kind,
        key,
    )
    return row


async def test_workers_on_two_pools_racing_on_two_hundred_due_timers_fire_each_exactly_once(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    keys = [f"order-{i:03d}" for i in range(200)]
    async with database.pool.acquire() as conn, conn.transaction():
        for i, key in enumerate(keys):
            await schedule_timer(
                conn, kind=kind, key=key, due_at=past(), merchant_id="m1", payload={"n": i}
            )
    other_pool = await create_pool(database.dsn, max_size=4, search_path=database.schema)
    pools = (database.pool, database.pool, other_pool, other_pool)
    handlers = [RecordingHandler() for _ in pools]
    workers = [
        TimerWorker(pool=pool, kind=kind, handler=handler, batch_size=15, poll_interval=0.02)
        for pool, handler in zip(pools, handlers, strict=True)
    ]
    stop = asyncio.Event()
    try:
        running = [asyncio.create_task(w.run(stop)) for w in workers]
        deadline = time.monotonic() + DEADLINE_SECONDS
        while await database.pool.fetchval(
            "SELECT count(*) FROM timers WHERE kind = $1 AND fired_at IS NULL", kind
        ):
            assert time.monotonic() < deadline, "timers left unfired"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), DEADLINE_SECONDS)
    finally:
        stop.set()
        await other_pool.close()

    assert sum((h.calls for h in handlers), Counter()) == Counter(dict.fromkeys(keys, 1))
    assert sum(1 for h in handlers if h.calls) > 1  # they really raced for the rows
    rows = await database.pool.fetch(
        "SELECT key, count(*) AS times, min(payload) AS n FROM fired GROUP BY key ORDER BY key"
    )
    assert [(r["key"], r["times"], r["n"]) for r in rows] == [(k, 1, i) for i, k in enumerate(keys)]
    states = await database.pool.fetch(
        "SELECT attempts, last_error, fired_at IS NOT NULL AS fired FROM timers WHERE kind = $1",
        kind,
    )
    assert {(r["attempts"], r["last_error"], r["fired"]) for r in states} == {(1, None, True)}


async def test_a_failing_handler_leaves_its_timer_unfired_with_the_error_and_a_later_due_time(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    async with database.pool.acquire() as conn:
        for key in ("good", "bad"):
            await schedule_timer(conn, kind=kind, key=key, due_at=past(), merchant_id="m1")
    handler = RecordingHandler(failing=frozenset({"bad"}))
    worker = TimerWorker(pool=database.pool, kind=kind, handler=handler)

    assert await worker.fire_due() == 2
    assert await worker.fire_due() == 0  # the failed one is not due again yet

    bad = await timer_row(database.pool, kind, "bad")
    good = await timer_row(database.pool, kind, "good")
    assert bad is not None
    assert good is not None
    assert bad["fired_at"] is None
    assert bad["attempts"] == 1
    assert bad["last_error"] == "RuntimeError('cannot handle bad')"
    assert bad["in_future"]
    assert good["fired_at"] is not None
    assert good["attempts"] == 1
    # The failed handler's own write was undone with its savepoint; the good one's kept.
    keys = [r["key"] for r in await database.pool.fetch("SELECT key FROM fired")]
    assert keys == ["good"]

    # Once due again and no longer failing, it fires, and its error history stays readable.
    await database.pool.execute(
        "UPDATE timers SET due_at = now() - interval '1 second' WHERE kind = $1 AND key = 'bad'",
        kind,
    )
    handler.failing = frozenset()
    assert await worker.fire_due() == 1
    bad = await timer_row(database.pool, kind, "bad")
    assert bad is not None
    assert bad["fired_at"] is not None
    assert bad["attempts"] == 2
    assert handler.calls == Counter({"good": 1, "bad": 2})


async def test_the_back_off_of_a_failing_timer_grows_with_its_attempts(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    async with database.pool.acquire() as conn:
        await schedule_timer(conn, kind=kind, key="bad", due_at=past(), merchant_id="m1")
    worker = TimerWorker(
        pool=database.pool,
        kind=kind,
        handler=RecordingHandler(failing=frozenset({"bad"})),
        max_backoff=timedelta(seconds=10),
    )
    delays: list[float] = []
    for _ in range(5):
        await database.pool.execute(
            "UPDATE timers SET due_at = now() - interval '1 second' WHERE kind = $1", kind
        )
        assert await worker.fire_due() == 1
        delays.append(
            await database.pool.fetchval(
                "SELECT extract(epoch FROM due_at - now()) FROM timers WHERE kind = $1", kind
            )
        )

    assert [round(d) for d in delays] == [1, 2, 4, 8, 10]  # capped by max_backoff
    row = await timer_row(database.pool, kind, "bad")
    assert row is not None
    assert row["attempts"] == 5
    assert row["fired_at"] is None


async def test_a_timer_not_yet_due_is_not_fired(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    async with database.pool.acquire() as conn:
        await schedule_timer(
            conn,
            kind=kind,
            key="later",
            due_at=datetime.now(UTC) + timedelta(hours=1),
            merchant_id="m1",
        )
        await schedule_timer(conn, kind=kind, key="now", due_at=past(), merchant_id="m1")
        await schedule_timer(conn, kind=unique("other"), key="now", due_at=past(), merchant_id="m1")
    handler = RecordingHandler()
    worker = TimerWorker(pool=database.pool, kind=kind, handler=handler)

    assert await worker.fire_due() == 1
    assert await worker.fire_due() == 0

    assert handler.calls == Counter({"now": 1})  # not the later one, nor another kind's
    later = await timer_row(database.pool, kind, "later")
    assert later is not None
    assert later["fired_at"] is None
    assert later["attempts"] == 0


async def test_a_fired_timer_scheduled_again_fires_again(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    handler = RecordingHandler()
    worker = TimerWorker(pool=database.pool, kind=kind, handler=handler)
    async with database.pool.acquire() as conn:
        await schedule_timer(
            conn, kind=kind, key="k", due_at=past(), merchant_id="m1", payload={"n": 1}
        )
    assert await worker.fire_due() == 1
    assert await worker.fire_due() == 0

    async with database.pool.acquire() as conn:
        await schedule_timer(
            conn, kind=kind, key="k", due_at=past(), merchant_id="m1", payload={"n": 2}
        )
    assert await worker.fire_due() == 1

    assert handler.calls == Counter({"k": 2})
    payloads = [r["payload"] for r in await database.pool.fetch("SELECT payload FROM fired")]
    assert payloads == [1, 2]


async def test_a_timer_moved_later_before_it_fires_waits_for_its_new_time(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    handler = RecordingHandler()
    worker = TimerWorker(pool=database.pool, kind=kind, handler=handler)
    async with database.pool.acquire() as conn:
        await schedule_timer(conn, kind=kind, key="k", due_at=past(), merchant_id="m1")
        await schedule_timer(
            conn,
            kind=kind,
            key="k",
            due_at=datetime.now(UTC) + timedelta(hours=1),
            merchant_id="m1",
        )

    assert await worker.fire_due() == 0
    assert handler.calls == Counter()


async def test_a_cancelled_timer_never_fires_and_only_a_pending_timer_can_be_cancelled(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    handler = RecordingHandler()
    worker = TimerWorker(pool=database.pool, kind=kind, handler=handler)
    async with database.pool.acquire() as conn:
        for key in ("cancelled", "fired"):
            await schedule_timer(conn, kind=kind, key=key, due_at=past(), merchant_id="m1")
        assert await cancel_timer(conn, kind=kind, key="cancelled") is True
        assert await cancel_timer(conn, kind=kind, key="cancelled") is False
        assert await cancel_timer(conn, kind=kind, key="never-scheduled") is False

    assert await worker.fire_due() == 1
    async with database.pool.acquire() as conn:
        assert await cancel_timer(conn, kind=kind, key="fired") is False

    assert handler.calls == Counter({"fired": 1})
    assert await timer_row(database.pool, kind, "cancelled") is None


async def test_a_timer_scheduled_in_a_rolled_back_transaction_does_not_exist(
    database: TestDatabase, fired_table: asyncpg.Pool
) -> None:
    kind = unique("deadline")
    async with database.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await schedule_timer(conn, kind=kind, key="k", due_at=past(), merchant_id="m1")
        await transaction.rollback()
    handler = RecordingHandler()

    assert await TimerWorker(pool=database.pool, kind=kind, handler=handler).fire_due() == 0
    assert await timer_row(database.pool, kind, "k") is None


async def test_a_handler_that_cancels_its_own_timer_elsewhere_does_not_wait_for_itself(
    database: TestDatabase,
) -> None:
    kind = unique("deadline")
    cancelled: list[bool] = []

    async def cancels_itself(timer: Timer, conn: Connection) -> None:
        async with database.pool.acquire() as other:
            cancelled.append(await cancel_timer(other, kind=timer.kind, key=timer.key))

    async with database.pool.acquire() as conn:
        await schedule_timer(conn, kind=kind, key="self", due_at=past(), merchant_id="m1")
    worker = TimerWorker(pool=database.pool, kind=kind, handler=cancels_itself)
    assert await asyncio.wait_for(worker.fire_due(), timeout=DEADLINE_SECONDS) == 1
    assert cancelled == [False]
    row = await timer_row(database.pool, kind, "self")
    assert row is not None
    assert row["fired_at"] is not None
