"""Fixtures for inventory tests against the real stack: a fresh database per module, and
the service's parts built on it with a clock the test can move."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest_asyncio

from services.inventory.bootstrap import Inventory, inventory
from services.inventory.settings import InventorySettings
from services.kit.settings import Environment
from services.kit.testing import StackEndpoints, unique


class Clock:
    """A clock that runs with real time from an offset the test can advance."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def database_url(dsn: str, name: str) -> str:
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


@pytest_asyncio.fixture(scope="module")
async def inventory_settings(stack: StackEndpoints) -> AsyncIterator[InventorySettings]:
    """Settings pointing at a database created for this module (dropped after it)."""
    name = unique("inventory_test")
    admin = await asyncpg.connect(stack.postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield InventorySettings(
            environment=Environment.TEST,
            postgres_dsn=database_url(stack.postgres_dsn, name),
            postgres_pool_max=30,
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
        )
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


InventoryFactory = Callable[..., AbstractAsyncContextManager[Inventory]]


@pytest_asyncio.fixture
async def make_inventory(inventory_settings: InventorySettings) -> InventoryFactory:
    """``async with make_inventory(clock=Clock()) as parts:`` — one process's worth of the
    service (call it twice for two replicas sharing the database and Redis)."""

    @asynccontextmanager
    async def build(clock: Callable[[], datetime] | None = None) -> AsyncIterator[Inventory]:
        async with inventory(inventory_settings, clock=clock or Clock()) as parts:
            yield parts

    return build
