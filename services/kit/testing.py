"""pytest fixtures for tests against the real local stack (Postgres, Redis, Kafka broker).

``make test`` starts the stack and exports ``LIVECOMMERCE_TEST_*``; without them (a bare
``pytest``) integration tests are skipped, unless ``LIVECOMMERCE_REQUIRE_STACK=1`` makes a
missing stack an error. Every test gets its own Postgres schema, its own Kafka topic names
and group ids, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import uuid4

import asyncpg
import pytest
import pytest_asyncio

from services.kit.db import create_pool, migrate
from services.kit.settings import Environment, KafkaProfile, ServiceSettings


@dataclass(frozen=True)
class StackEndpoints:
    postgres_dsn: str
    redis_url: str
    kafka_bootstrap: str
    kafka_profile: KafkaProfile


def _test_kafka_profile() -> KafkaProfile:
    return KafkaProfile(os.environ.get("LIVECOMMERCE_TEST_KAFKA_PROFILE", "local"))


def _endpoints() -> StackEndpoints | None:
    dsn = os.environ.get("LIVECOMMERCE_TEST_POSTGRES_DSN")
    if not dsn:
        return None
    return StackEndpoints(
        postgres_dsn=dsn,
        redis_url=os.environ["LIVECOMMERCE_TEST_REDIS_URL"],
        kafka_bootstrap=os.environ["LIVECOMMERCE_TEST_KAFKA_BOOTSTRAP"],
        kafka_profile=_test_kafka_profile(),
    )


@pytest.fixture(scope="session")
def stack() -> StackEndpoints:
    found = _endpoints()
    if found is None:
        if os.environ.get("LIVECOMMERCE_REQUIRE_STACK"):
            pytest.fail("LIVECOMMERCE_REQUIRE_STACK is set but no stack endpoints are exported")
        pytest.skip("needs the local stack: run `make test` (or `python -m devstack test`)")
    return found


async def eventually(
    check: Callable[[], Awaitable[bool]],
    what: str = "the condition",
    *,
    within: float = 20.0,
    every: float = 0.02,
) -> None:
    """Wait until ``check()`` is true, asking every ``every`` seconds; fail the test with
    ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {within} s waiting for {what}")
        await asyncio.sleep(every)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:10]}"


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # a fixture's value, not a test class for pytest to collect

    dsn: str
    schema: str
    pool: asyncpg.Pool

    def settings(self, kafka_bootstrap: str) -> ServiceSettings:
        """Settings of a throw-away service: its own name, so its own topic names."""
        return ServiceSettings(
            service_name=unique("svc"),
            environment=Environment.TEST,
            postgres_dsn=self.dsn,
            kafka_bootstrap=kafka_bootstrap,
            kafka_profile=_test_kafka_profile(),
            kafka_partitions=3,
        )


async def open_test_database(
    stack: StackEndpoints, packages: Sequence[str] = ()
) -> tuple[TestDatabase, Callable[[], Awaitable[None]]]:
    schema = unique("t")
    admin = await asyncpg.connect(stack.postgres_dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    pool = await create_pool(stack.postgres_dsn, min_size=1, max_size=20, search_path=schema)
    await migrate(pool, packages)

    async def drop() -> None:
        await pool.close()
        conn = await asyncpg.connect(stack.postgres_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()

    return TestDatabase(stack.postgres_dsn, schema, pool), drop


@pytest_asyncio.fixture
async def database(stack: StackEndpoints) -> AsyncIterator[TestDatabase]:
    """A fresh schema with the kernel's tables, dropped after the test."""
    db, drop = await open_test_database(stack)
    try:
        yield db
    finally:
        await drop()
