"""Test support every service's suite needs: a clock a test can move, and a database of its
own created on the local stack for a test module (and dropped after it).

A module of its own, not part of ``testing.py``: it adds to the kernel without changing the
fixtures every suite already relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from services.kit.scaffolding import throwaway_database
from services.kit.testing import StackEndpoints


class MovableClock:
    """A clock that runs with real time from an offset the test can advance."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@asynccontextmanager
async def scratch_database(stack: StackEndpoints, prefix: str) -> AsyncIterator[str]:
    """A new database on the stack's Postgres; its DSN; dropped (forcibly) on exit."""
    async with throwaway_database(stack.postgres_dsn, prefix) as dsn:
        yield dsn
