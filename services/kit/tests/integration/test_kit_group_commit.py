"""Group commit against the real Postgres: concurrent appends share transactions, each
keeps its own request's context, and an item at fault fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.kit.context import MessageContext, message_context
from services.kit.db import Connection
from services.kit.errors import ConcurrencyError
from services.kit.eventstore import NewEvent, PostgresEventStore, StreamAppend
from services.kit.group_commit import GroupCommit
from services.kit.testing import TestDatabase


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
