"""Postgres connection pools and the schema migrations of the kernel and of each service.

Migrations are plain SQL files in a ``schema/`` folder inside a package, applied in name
order, once, under a transaction-scoped advisory lock so that replicas starting together
do not race. It is written here rather than taken from a library because the kernel needs
only this, on asyncpg, and the migration tools on PyPI bring a synchronous driver or an ORM.
"""

from __future__ import annotations

import asyncio
import importlib.resources
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.kit.errors import OutcomeUnknownError, UnavailableError
from services.kit.logging import get_logger
from services.kit.settings import ServiceSettings

log = get_logger(__name__)

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection a handler writes through: a plain one or one lent by a pool."""

DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08; the connection dropped mid-call
    asyncpg.InterfaceError,  # the connection is closed (the server went away before)
    asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.AdminShutdownError,  # terminated by a restart or an operator
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)
"""Errors that mean the database cannot be reached now, not that the request is wrong."""
DATABASE_UNAVAILABLE = "the database is unavailable; retry later"


async def execute_rows(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``sql`` once per row: a plain statement for one row, a pipelined ``executemany``
    (one round trip) for more, nothing for none. For group commits' batches."""
    if len(rows) == 1:
        await conn.execute(sql, *rows[0])
    elif rows:
        await conn.executemany(sql, rows)


WRITE_OUTCOME_UNKNOWN = "the database went away while this was being saved; retry to find out"


@asynccontextmanager
async def committing(conn: Connection) -> AsyncIterator[Connection]:
    """``conn.transaction()``, except that a database outage during COMMIT itself is raised as
    :class:`OutcomeUnknownError`: the server may have committed before the connection was
    lost, so, unlike an outage before COMMIT, it does not mean "nothing was written". The
    writer finds out with :meth:`PostgresEventStore.settle
    <services.kit.eventstore.PostgresEventStore.settle>`."""
    body_ran = False
    try:
        async with conn.transaction():
            yield conn
            body_ran = True
    except DATABASE_OUTAGES as error:
        if body_ran:
            raise OutcomeUnknownError(WRITE_OUTCOME_UNKNOWN) from error
        raise


class KeptConnection:
    """One pool connection kept by a writer that runs one transaction at a time (a group
    commit behind a single-flight micro-batcher): no pool acquire and no reset round trip
    per batch, which a hot path pays on every batch. A connection found broken is given back
    and a new one is taken on the next use. Not for concurrent users: each ``use()`` must end
    before the next begins."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._kept: PoolConnectionProxy | None = None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[PoolConnectionProxy]:
        if self._kept is None:
            self._kept = await self._pool.acquire()
        try:
            yield self._kept
        except BaseException:
            if _lost(self._kept):
                await self._pool.release(self._kept)  # a no-op for one the pool took back
                self._kept = None
            raise

    async def close(self) -> None:
        """Give the connection back to the pool (before the pool closes)."""
        if self._kept is not None:
            await self._pool.release(self._kept)
            self._kept = None


class KeptConnections:
    """``count`` kept connections (:class:`KeptConnection`) for a writer that runs up to
    ``count`` transactions at once (a group commit behind a micro-batcher with that many
    flushes in flight): ``use()`` lends a free one, waiting for one when all are lent. Two
    group commits in flight let one batch's transaction run in the database while the
    process prepares the next batch; what they both lock (a sale's row) still orders them
    in the database, not in the process."""

    def __init__(self, pool: asyncpg.Pool, count: int) -> None:
        self._free: asyncio.Queue[KeptConnection] = asyncio.Queue()
        for _ in range(count):
            self._free.put_nowait(KeptConnection(pool))
        self.count = count

    @asynccontextmanager
    async def use(self) -> AsyncIterator[PoolConnectionProxy]:
        kept = await self._free.get()
        try:
            async with kept.use() as conn:
                yield conn
        finally:
            self._free.put_nowait(kept)

    async def close(self) -> None:
        """Give every connection back to the pool (none may be lent)."""
        while not self._free.empty():
            await self._free.get_nowait().close()


def _lost(conn: PoolConnectionProxy) -> bool:
    """Whether the connection is closed; a pool takes a connection that closed back by
    itself, after which the proxy refuses even this question."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def database_outage(error: BaseException) -> UnavailableError | None:
    """What a request that failed with ``error`` answers when the database could not be
    reached (503, UNAVAILABLE: retry later), or None when the error is something else."""
    return UnavailableError(DATABASE_UNAVAILABLE) if isinstance(error, DATABASE_OUTAGES) else None


KIT_SCHEMA_PACKAGE = "services.kit"
_MIGRATION_LOCK_KEY = 0x11FEC0  # any constant, the same for every process of every service


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pool does to a connection given back, beyond what asyncpg always does (roll
    back a transaction left open, drop the Python-side listeners): nothing.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip for every pooled query, which cost
    ~12 µs of the caller's CPU and ~30 µs of Postgres's per query here, and halved a pool's
    query rate (docs/benchmarks.md, "Pooled queries without the reset"). The invariant
    that makes skipping it safe: nothing leaves session state on a pooled connection. The
    code sets settings with ``SET LOCAL`` or at connect time, takes only
    transaction-scoped advisory locks there, and never LISTENs on one (the outbox relay's
    session lock and LISTEN are on a connection of its own)."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, search_path: str | None = None
) -> asyncpg.Pool:
    """A pool; ``search_path`` confines every table to one schema (tests use one per test).
    Connections go back to it without a reset round trip (see :func:`_keep_session`)."""
    settings = {"search_path": search_path} if search_path else None
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=settings,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


def _migrations_of(package: str) -> list[tuple[str, str]]:
    folder = importlib.resources.files(package).joinpath("schema")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(f"{package}:{entry.name}", entry.read_text(encoding="utf-8")) for entry in files]


async def migrate(pool: asyncpg.Pool, packages: Sequence[str]) -> list[str]:
    """Apply the kernel's schema and then each package's; return the names newly applied."""
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        for package in [KIT_SCHEMA_PACKAGE, *packages]:
            for name, sql in _migrations_of(package):
                if name in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
    if applied:
        log.info("migrations applied", names=applied)
    return applied


@asynccontextmanager
async def database(
    settings: ServiceSettings, packages: Sequence[str]
) -> AsyncIterator[asyncpg.Pool]:
    """The service's pool, with its schema migrated, closed on exit."""
    pool = await create_pool(
        settings.postgres_dsn,
        min_size=settings.postgres_pool_min,
        max_size=settings.postgres_pool_max,
    )
    try:
        await migrate(pool, packages)
        yield pool
    finally:
        await pool.close()
