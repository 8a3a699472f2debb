"""Group commit against the real Postgres: concurrent appends share transactions, each
keeps its own request's context, and an item at fault fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import pytest

from services.kit.context import MessageContext, message_context
from services.kit.db import Connection, create_pool
from services.kit.errors import ConcurrencyError, OutcomeUnknownError, UnavailableError
from services.kit.eventstore import NewEvent, PostgresEventStore, StreamAppend
from services.kit.group_commit import GroupCommit
from services.kit.testing import CommitCutter, TestDatabase


def append(stream: str, expected: int = 0) -> StreamAppend:
    return StreamAppend(
        stream_id=stream,
        aggregate_type="thing",
        merchant_id="m1",
        expected_version=expected,
        events=[NewEvent("thing.Happened", stream.encode())],
    )


async def test_concurrent_items_share_transactions_and_keep_their_own_context(
    database: TestDatabase,
) -> None:
    await database.pool.execute("CREATE TABLE things (stream text PRIMARY KEY)")
    transactions: list[int] = []

    async def write(conn: Connection, items: Sequence[StreamAppend]) -> None:
        transactions.append(len(items))
        await conn.executemany("INSERT INTO things VALUES ($1)", [(i.stream_id,) for i in items])

    commit: GroupCommit[StreamAppend] = GroupCommit(
        database.pool,
        PostgresEventStore(database.pool, "test"),
        append_of=lambda a: a,
        write=write,
    )

    async def request(n: int) -> str:
        with message_context(MessageContext(f"req-{n}", f"req-{n}")):
            [stored] = await commit.commit(append(f"s-{n}"))
            return stored.correlation_id

    correlations = await asyncio.gather(*(request(n) for n in range(50)))
    assert correlations == [f"req-{n}" for n in range(50)]
    assert sum(transactions) == 50
    assert len(transactions) < 10
    assert await database.pool.fetchval("SELECT count(*) FROM things") == 50


async def test_an_item_at_fault_fails_alone(database: TestDatabase) -> None:
    store = PostgresEventStore(database.pool, "test")
    await store.append([append("taken")])
    commit: GroupCommit[StreamAppend] = GroupCommit(database.pool, store, append_of=lambda a: a)
    results = await asyncio.gather(
        commit.commit(append("fine-1")),
        commit.commit(append("taken")),
        commit.commit(append("fine-2")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConcurrencyError)
    assert [len(r) for r in (results[0], results[2]) if isinstance(r, list)] == [1, 1]
    with pytest.raises(ConcurrencyError):
        await commit.commit(append("fine-1"))


@dataclass
class CutWorld:
    cutter: CommitCutter
    commit: GroupCommit[StreamAppend]
    store: PostgresEventStore


@asynccontextmanager
async def behind_a_cutter(database: TestDatabase) -> AsyncIterator[CutWorld]:
    """A group commit (with rows of its own in ``things``) whose connections go through a
    :class:`CommitCutter`."""
    await database.pool.execute("CREATE TABLE things (stream text PRIMARY KEY)")

    async def write(conn: Connection, items: Sequence[StreamAppend]) -> None:
        await conn.executemany("INSERT INTO things VALUES ($1)", [(i.stream_id,) for i in items])

    async with CommitCutter(database.dsn) as cutter:
        pool = await create_pool(cutter.dsn, search_path=database.schema)
        try:
            store = PostgresEventStore(pool, "test")
            commit = GroupCommit(pool, store, append_of=lambda a: a, write=write)
            yield CutWorld(cutter, commit, store)
        finally:
            await pool.close()


async def test_a_batch_whose_commit_was_applied_but_never_answered_succeeds(
    database: TestDatabase,
) -> None:
    async with behind_a_cutter(database) as world:
        world.cutter.cut_next_commit(applied=True)
        stored = await asyncio.gather(
            world.commit.commit(append("a")), world.commit.commit(append("b"))
        )

    assert world.cutter.cuts == 1
    assert [[event.stream_id for event in events] for events in stored] == [["a"], ["b"]]
    assert await database.pool.fetchval("SELECT count(*) FROM events") == 2
    assert await database.pool.fetchval("SELECT count(*) FROM things") == 2


async def test_a_batch_cut_before_its_commit_reached_the_server_fails_and_writes_nothing(
    database: TestDatabase,
) -> None:
    async with behind_a_cutter(database) as world:
        world.cutter.cut_next_commit(applied=False)
        with pytest.raises(UnavailableError) as raised:
            await world.commit.commit(append("a"))
        retried = await world.commit.commit(append("a"))

    assert not isinstance(raised.value, OutcomeUnknownError)
    assert [event.version for event in retried] == [1]
    assert await database.pool.fetchval("SELECT count(*) FROM events") == 1


async def test_a_batch_whose_outcome_cannot_be_found_out_fails_as_unknown(
    database: TestDatabase,
) -> None:
    async with behind_a_cutter(database) as world:
        world.cutter.cut_next_commit(applied=True, then_down=True)
        with pytest.raises(OutcomeUnknownError):
            await world.commit.commit(append("a"))
        world.cutter.come_back()
        event_id = await database.pool.fetchval("SELECT event_id::text FROM events")
        [found] = await world.store.recorded([UUID(event_id)])

    assert found.stream_id == "a"
