"""Fixtures for inventory tests against the real stack: a fresh database per module, and
the service's parts built on it with a clock the test can move."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime

import pytest_asyncio

from services.inventory.bootstrap import Inventory, inventory
from services.inventory.settings import InventorySettings
from services.kit.scaffolding import throwaway_database
from services.kit.settings import Environment
from services.kit.testclock import MovableClock
from services.kit.testing import StackEndpoints

Clock = MovableClock


@pytest_asyncio.fixture(scope="module")
async def inventory_settings(stack: StackEndpoints) -> AsyncIterator[InventorySettings]:
    """Settings pointing at a database created for this module (dropped after it)."""
    async with throwaway_database(stack.postgres_dsn, "inventory_test") as dsn:
        yield InventorySettings(
            environment=Environment.TEST,
            postgres_dsn=dsn,
            postgres_pool_max=30,
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
        )


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
