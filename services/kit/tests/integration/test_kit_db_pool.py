"""The kit's pools against the real Postgres: a connection goes back to its pool without a
reset round trip, and a transaction left open on it is still rolled back; kept connections
are lent to one user at a time."""

from __future__ import annotations

import asyncio

from asyncpg.connection import LoggedQuery

from services.kit.db import KeptConnections, create_pool
from services.kit.testing import TestDatabase


async def test_a_pooled_query_costs_one_round_trip_not_two(database: TestDatabase) -> None:
    pool = await create_pool(database.dsn, min_size=1, max_size=1, search_path=database.schema)
    sent: list[str] = []

    def record(query: LoggedQuery) -> None:
        sent.append(query.query)

    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(record)
        for _ in range(3):
            assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    assert sent == ["SELECT 1"] * 3  # asyncpg's default adds "... RESET ALL;" after each


async def test_a_transaction_left_open_is_rolled_back_when_the_connection_goes_back(
    database: TestDatabase,
) -> None:
    await database.pool.execute("CREATE TABLE notes (body text)")
    pool = await create_pool(database.dsn, min_size=1, max_size=1, search_path=database.schema)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO notes VALUES ('never committed')")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM notes") == 0
    finally:
        await pool.close()


async def test_kept_connections_lend_each_to_one_user_and_a_third_waits_for_one_back(
    database: TestDatabase,
) -> None:
    pool = await create_pool(database.dsn, min_size=1, max_size=4, search_path=database.schema)
    kept = KeptConnections(pool, 2)
    lent: dict[int, int] = {}
    holding = [asyncio.Event(), asyncio.Event()]
    done = [asyncio.Event(), asyncio.Event()]

    async def hold(index: int) -> None:
        async with kept.use() as conn:
            lent[index] = await conn.fetchval("SELECT pg_backend_pid()")
            holding[index].set()
            await done[index].wait()

    async def use_once() -> int:
        async with kept.use() as conn:
            pid: int = await conn.fetchval("SELECT pg_backend_pid()")
            return pid

    try:
        holders = [asyncio.create_task(hold(i)) for i in range(2)]
        await asyncio.gather(*(event.wait() for event in holding))
        third = asyncio.create_task(use_once())
        await asyncio.sleep(0.1)
        waited = not third.done()
        done[1].set()
        got = await third
        done[0].set()
        await asyncio.gather(*holders)
        later = {await use_once() for _ in range(4)}
    finally:
        await kept.close()
        await pool.close()

    assert lent[0] != lent[1]
    assert waited
    assert got == lent[1]  # the one given back
    assert later == set(lent.values())  # the same two connections, kept
