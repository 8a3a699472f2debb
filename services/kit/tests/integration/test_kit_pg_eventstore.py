"""The Postgres event store against a real Postgres: concurrency, gap-free global order,
atomic multi-stream appends, joining a caller's transaction, and the migrations."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest

from services.kit.context import MessageContext, message_context
from services.kit.db import create_pool, migrate
from services.kit.errors import ConcurrencyError
from services.kit.eventstore import NewEvent, PostgresEventStore, StoredEvent, StreamAppend
from services.kit.testing import StackEndpoints, TestDatabase, unique


def new_events(count: int, label: str = "e") -> list[NewEvent]:
    return [
        NewEvent(event_type="test.Happened", payload=f"{label}-{i}".encode()) for i in range(count)
    ]


def append_to(stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        aggregate_type="thing",
        merchant_id="m1",
        expected_version=expected_version,
        events=events,
    )


async def positions(pool: asyncpg.Pool) -> list[int]:
    return [r["position"] for r in await pool.fetch("SELECT position FROM events ORDER BY 1")]


async def recorded_last(pool: asyncpg.Pool) -> int:
    value: int = await pool.fetchval("SELECT last FROM event_position")
    return value


@pytest.fixture
def store(database: TestDatabase) -> PostgresEventStore:
    return PostgresEventStore(database.pool, "test")


@pytest.mark.parametrize("head", [0, 3])
async def test_only_one_of_twenty_concurrent_appends_expecting_the_same_version_wins(
    database: TestDatabase, store: PostgresEventStore, head: int
) -> None:
    stream = unique("stream")
    if head:
        await store.append([append_to(stream, 0, new_events(head, "seed"))])
    contenders = 20
    barrier = asyncio.Barrier(contenders)

    async def contend(index: int) -> list[StoredEvent]:
        async with database.pool.acquire() as conn:
            await barrier.wait()  # every contender holds its own connection before appending
            return await store.append(
                [append_to(stream, head, new_events(3, f"c{index}"))], conn=conn
            )

    outcomes = await asyncio.gather(
        *(contend(i) for i in range(contenders)), return_exceptions=True
    )

    winners = [o for o in outcomes if isinstance(o, list)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1
    assert len(losers) == contenders - 1
    assert all(isinstance(o, ConcurrencyError) for o in losers)
    stored = await store.read_stream(stream)
    assert [e.version for e in stored] == list(range(1, head + 4))
    assert [e.event_id for e in stored[head:]] == [e.event_id for e in winners[0]]
    assert await positions(database.pool) == list(range(1, head + 4))
    assert await recorded_last(database.pool) == head + 3


async def test_global_positions_have_no_gaps_when_many_appenders_race_and_some_conflict(
    database: TestDatabase, store: PostgresEventStore
) -> None:
    contested = unique("contested")
    await store.append([append_to(contested, 0, new_events(1))])
    taken = NewEvent(event_type="test.Happened", payload=b"taken")
    await store.append([append_to(unique("owner"), 0, [taken])])
    rng = random.Random(7)  # a fixed, reproducible shape of load
    written: dict[str, int] = {}

    async def writer(index: int) -> None:
        stream = unique(f"w{index}")
        version = 0
        for _ in range(5):
            count = rng.randint(1, 3)
            await store.append([append_to(stream, version, new_events(count))])
            version += count
        written[stream] = version

    async def stale_writer() -> None:
        # Loses the version check after having taken the position lock: must roll back.
        with pytest.raises(ConcurrencyError):
            await store.append([append_to(contested, 0, new_events(2))])

    async def duplicate_writer() -> None:
        # Fails only at the insert, after positions were allocated: must roll back too.
        with pytest.raises(ConcurrencyError):
            await store.append([append_to(unique("dup"), 0, [*new_events(2), taken])])

    async def half_stale_writer() -> None:
        with pytest.raises(ConcurrencyError):
            await store.append(
                [
                    append_to(unique("fresh"), 0, new_events(2)),
                    append_to(contested, 5, new_events(1)),
                ]
            )

    jobs = [writer(i) for i in range(30)]
    jobs += [stale_writer() for _ in range(8)]
    jobs += [duplicate_writer() for _ in range(8)]
    jobs += [half_stale_writer() for _ in range(8)]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)

    expected_total = 2 + sum(written.values())
    assert await positions(database.pool) == list(range(1, expected_total + 1))
    assert await recorded_last(database.pool) == expected_total
    assert await store.last_position() == expected_total
    for stream, version in written.items():
        assert [e.version for e in await store.read_stream(stream)] == list(range(1, version + 1))
    assert [e.version for e in await store.read_stream(contested)] == [1]


async def test_a_multi_stream_append_writes_every_stream_or_none(
    database: TestDatabase, store: PostgresEventStore
) -> None:
    fresh, existing = unique("fresh"), unique("existing")
    await store.append([append_to(existing, 0, new_events(1))])

    with pytest.raises(ConcurrencyError):
        await store.append(
            [append_to(fresh, 0, new_events(2)), append_to(existing, 0, new_events(1))]
        )

    assert await store.read_stream(fresh) == []
    assert len(await store.read_stream(existing)) == 1
    assert await store.last_position() == 1

    stored = await store.append(
        [
            append_to(fresh, 0, new_events(2)),
            append_to(existing, 1, new_events(1)),
            append_to(fresh, 2, new_events(1)),
        ]
    )

    assert [(e.stream_id, e.version, e.position) for e in stored] == [
        (fresh, 1, 2),
        (fresh, 2, 3),
        (existing, 2, 4),
        (fresh, 3, 5),
    ]
    assert await store.read_all(1) == stored
    assert await positions(database.pool) == [1, 2, 3, 4, 5]


async def test_an_append_on_the_callers_connection_is_undone_with_the_callers_transaction(
    database: TestDatabase, store: PostgresEventStore
) -> None:
    stream = unique("stream")
    await database.pool.execute("CREATE TABLE side_effects (note text NOT NULL)")

    async with database.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        stored = await store.append([append_to(stream, 0, new_events(2))], conn=conn)
        await conn.execute("INSERT INTO side_effects VALUES ('with the events')")
        seen_inside = await conn.fetchval("SELECT count(*) FROM events")
        seen_outside = len(await store.read_stream(stream))  # another pool connection
        await transaction.rollback()

    assert [e.position for e in stored] == [1, 2]
    assert seen_inside == 2
    assert seen_outside == 0
    assert await store.read_stream(stream) == []
    assert await database.pool.fetchval("SELECT count(*) FROM side_effects") == 0
    assert await store.last_position() == 0

    async with database.pool.acquire() as conn, conn.transaction():
        await store.append([append_to(stream, 0, new_events(2))], conn=conn)
        await conn.execute("INSERT INTO side_effects VALUES ('with the events')")

    assert [e.position for e in await store.read_stream(stream)] == [1, 2]
    assert await database.pool.fetchval("SELECT count(*) FROM side_effects") == 1


async def test_a_failed_append_inside_the_callers_transaction_leaves_that_transaction_usable(
    database: TestDatabase, store: PostgresEventStore
) -> None:
    stream = unique("stream")
    await store.append([append_to(stream, 0, new_events(1))])
    await database.pool.execute("CREATE TABLE side_effects (note text NOT NULL)")

    async with database.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO side_effects VALUES ('before')")
        with pytest.raises(ConcurrencyError):
            await store.append([append_to(stream, 0, new_events(1))], conn=conn)
        await conn.execute("INSERT INTO side_effects VALUES ('after')")

    notes = [r["note"] for r in await database.pool.fetch("SELECT note FROM side_effects")]
    assert sorted(notes) == ["after", "before"]
    assert await store.last_position() == 1


async def test_appending_an_event_id_already_stored_is_a_concurrency_error_that_writes_nothing(
    database: TestDatabase, store: PostgresEventStore
) -> None:
    first, second = unique("first"), unique("second")
    event = NewEvent(event_type="test.Happened", payload=b"once")
    await store.append([append_to(first, 0, [event])])

    with pytest.raises(ConcurrencyError):
        await store.append([append_to(second, 0, [*new_events(1), event])])
    with pytest.raises(ConcurrencyError):
        await store.append([append_to(second, 0, [event, event])])

    assert await store.read_stream(second) == []
    assert await positions(database.pool) == [1]
    assert await store.last_position() == 1


async def test_read_all_returns_events_after_a_position_in_position_order_up_to_a_limit(
    store: PostgresEventStore,
) -> None:
    streams = [unique("s") for _ in range(3)]
    for round_ in range(4):
        await store.append([append_to(s, round_, new_events(1, f"r{round_}")) for s in streams])

    first = await store.read_all(0, limit=5)
    second = await store.read_all(5, limit=5)
    rest = await store.read_all(10)

    assert [e.position for e in first] == [1, 2, 3, 4, 5]
    assert [e.position for e in second] == [6, 7, 8, 9, 10]
    assert [e.position for e in rest] == [11, 12]
    assert await store.read_all(12) == []
    everything = first + second + rest
    assert [(e.stream_id, e.version) for e in everything[:4]] == [
        (streams[0], 1),
        (streams[1], 1),
        (streams[2], 1),
        (streams[0], 2),
    ]
    assert [e.version for e in await store.read_stream(streams[1], after_version=2)] == [3, 4]


async def test_a_stored_event_keeps_every_field_and_the_context_that_caused_it(
    store: PostgresEventStore,
) -> None:
    stream = unique("stream")
    occurred = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    event = NewEvent(
        event_type="test.Happened", payload=b"\x00\x01binary\xff", occurred_at=occurred
    )
    context = MessageContext(
        correlation_id="corr-1",
        causation_id="cause-1",
        trace_context={"traceparent": "00-ab-cd-01"},
    )

    with message_context(context):
        (returned,) = await store.append(
            [
                StreamAppend(
                    stream_id=stream,
                    aggregate_type="thing",
                    merchant_id="merchant-9",
                    expected_version=0,
                    events=[event],
                )
            ]
        )

    (read,) = await store.read_stream(stream)
    assert read == returned
    assert read.event_id == event.event_id
    assert isinstance(read.event_id, UUID)
    assert read.event_type == "test.Happened"
    assert read.aggregate_type == "thing"
    assert read.merchant_id == "merchant-9"
    assert read.occurred_at == occurred
    assert read.correlation_id == "corr-1"
    assert read.causation_id == "cause-1"
    assert read.trace_context == {"traceparent": "00-ab-cd-01"}
    assert read.payload == b"\x00\x01binary\xff"


async def test_a_group_commits_append_returns_the_ids_in_order_and_stores_what_append_would(
    database: TestDatabase, store: PostgresEventStore
) -> None:
    traced, plain = unique("traced"), unique("plain")
    with_trace = MessageContext("corr-1", "cause-1", {"traceparent": "00-ab-cd-01"})
    appends = [
        StreamAppend(traced, "thing", "m1", 0, new_events(2, "t"), context=with_trace),
        StreamAppend(plain, "thing", "m1", 0, new_events(1, "p")),
    ]

    async with database.pool.acquire() as conn, conn.transaction():
        ids = await store.append_ids(appends, conn=conn)
        nothing = await store.append_ids([append_to(unique("none"), 0, [])], conn=conn)

    assert ids == [e.event_id for a in appends for e in a.events]
    assert nothing == []
    stored = await store.read_all(0)
    assert [e.event_id for e in stored] == ids
    assert [(e.stream_id, e.version, e.position) for e in stored] == [
        (traced, 1, 1),
        (traced, 2, 2),
        (plain, 1, 3),
    ]
    assert [e.trace_context for e in stored] == [{"traceparent": "00-ab-cd-01"}] * 2 + [{}]
    assert stored[0].correlation_id == "corr-1"
    assert [e.payload for e in stored] == [b"t-0", b"t-1", b"p-0"]


async def test_an_append_of_no_events_changes_nothing(store: PostgresEventStore) -> None:
    assert await store.append([]) == []
    assert await store.append([append_to(unique("s"), 0, [])]) == []
    assert await store.last_position() == 0


async def test_migrating_twice_applies_nothing_the_second_time(stack: StackEndpoints) -> None:
    schema = unique("t")
    admin = await asyncpg.connect(stack.postgres_dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await create_pool(stack.postgres_dsn, max_size=4, search_path=schema)
    try:
        first = await migrate(pool, [])
        again = await migrate(pool, [])
        with_inventory = await migrate(pool, ["services.inventory"])
        racing = await asyncio.gather(*(migrate(pool, ["services.inventory"]) for _ in range(3)))
        tables = {
            r["tablename"]
            for r in await pool.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
            )
        }
        last = await pool.fetchval("SELECT last FROM event_position")
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()

    assert first == ["services.kit:001_kit.sql", "services.kit:002_event_actor.sql"]
    assert again == []
    assert with_inventory == [
        "services.inventory:001_stock_levels.sql",
        "services.inventory:002_flash_sales.sql",
    ]
    assert racing == [[], [], []]
    assert {"events", "event_position", "relay_positions", "inbox", "timers"} <= tables
    assert "stock_levels" in tables
    assert last == 0


async def test_concurrent_first_migrations_apply_each_file_exactly_once(
    stack: StackEndpoints,
) -> None:
    schema = unique("t")
    admin = await asyncpg.connect(stack.postgres_dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pools = [
        await create_pool(stack.postgres_dsn, max_size=1, search_path=schema) for _ in range(3)
    ]
    try:
        results = await asyncio.gather(*(migrate(p, ["services.inventory"]) for p in pools))
        rows = await pools[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
    finally:
        for pool in pools:
            await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()

    applied = sorted(name for result in results for name in result)
    assert applied == [
        "services.inventory:001_stock_levels.sql",
        "services.inventory:002_flash_sales.sql",
        "services.kit:001_kit.sql",
        "services.kit:002_event_actor.sql",
    ]
    assert sorted(r["name"] for r in rows) == applied
    assert sum(1 for result in results if result) == 1
