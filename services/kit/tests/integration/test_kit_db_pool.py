"""The kit's pools against the real Postgres: a connection goes back to its pool without a
reset round trip, and a transaction left open on it is still rolled back."""

from __future__ import annotations

from asyncpg.connection import LoggedQuery

from services.kit.db import create_pool
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
