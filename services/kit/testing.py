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
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest
import pytest_asyncio

from services.kit.db import create_pool, migrate
from services.kit.runtime import until_first_done
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


async def waiting_for_a_lock(pool: asyncpg.Pool, table: str) -> bool:
    """True while a statement on ``table`` in ``pool``'s database waits for a lock: how a
    test that holds a row lock knows a writer (a group commit) has reached it. Tests run
    one at a time, so no other test's writer is counted."""
    waiting = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        table,
    )
    return bool(waiting)


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


_COMMIT_MESSAGE = b"Q\x00\x00\x00\x0cCOMMIT;\x00"
"""The simple-query message asyncpg sends to commit a transaction."""


class CommitCutter:
    """A TCP proxy in front of Postgres that cuts a connection at the next COMMIT it carries:
    before passing it on (the server rolls the transaction back) or once the server has
    answered it (it committed; the client never hears). Optionally the database then stays
    unreachable through the proxy until :meth:`come_back`. For tests of writes whose COMMIT
    loses the database, a real network fault against the real server."""

    def __init__(self, dsn: str) -> None:
        self._target = urlsplit(dsn)
        self._server: asyncio.Server | None = None
        self._armed: tuple[bool, bool] | None = None
        self._down = False
        self._links: set[asyncio.StreamWriter] = set()
        self.cuts = 0

    async def __aenter__(self) -> CommitCutter:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._abort_all()
        await self._server.wait_closed()

    @property
    def dsn(self) -> str:
        """The target's DSN with the proxy's address in place of the server's."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        user = f"{self._target.username}@" if self._target.username else ""
        return urlunsplit(self._target._replace(netloc=f"{user}127.0.0.1:{port}"))

    def cut_next_commit(self, *, applied: bool, then_down: bool = False) -> None:
        """Cut the connection that sends the next COMMIT: after the server applied it
        (``applied``) or before it got it; with ``then_down``, every connection too."""
        self._armed = (applied, then_down)

    def come_back(self) -> None:
        self._down = False

    def _abort_all(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def _cut(self, then_down: bool, *writers: asyncio.StreamWriter) -> None:
        self.cuts += 1
        for writer in writers:
            writer.transport.abort()
        if then_down:
            self._down = True
            self._abort_all()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._down:
            client_w.transport.abort()
            return
        host, port = self._target.hostname or "127.0.0.1", self._target.port or 5432
        server_r, server_w = await asyncio.open_connection(host, port)
        self._links.update((client_w, server_w))
        cut_on_answer: list[bool] = []

        async def upstream() -> None:
            while data := await client_r.read(65536):
                if self._armed is not None and _COMMIT_MESSAGE in data:
                    applied, then_down = self._armed
                    self._armed = None
                    if not applied:
                        self._cut(then_down, client_w, server_w)
                        return
                    cut_on_answer.append(then_down)
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if cut_on_answer:  # the server answered the COMMIT: it is applied
                    self._cut(cut_on_answer[0], client_w, server_w)
                    return
                client_w.write(data)
                await client_w.drain()

        try:
            await until_first_done(upstream(), downstream())
        finally:
            for writer in (client_w, server_w):
                self._links.discard(writer)
                writer.transport.abort()
