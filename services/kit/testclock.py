"""Test support every service's suite needs: a clock a test can move, and a database of its
own created on the local stack for a test module (and dropped after it).

A module of its own, not part of ``testing.py``: it adds to the kernel without changing the
fixtures every suite already relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

from services.kit.testing import StackEndpoints, unique


class MovableClock:
    """A clock that runs with real time from an offset the test can advance."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def database_url(dsn: str, name: str) -> str:
    """``dsn`` pointing at the database ``name`` instead."""
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


@asynccontextmanager
async def scratch_database(stack: StackEndpoints, prefix: str) -> AsyncIterator[str]:
    """A new database on the stack's Postgres; its DSN; dropped (forcibly) on exit."""
    name = unique(prefix)
    admin = await asyncpg.connect(stack.postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(stack.postgres_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
