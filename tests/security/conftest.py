"""Fixtures: the order HTTP app in process on a database of its own, with the running
inventory, promotion and sandbox-payment processes behind it, and a shop (merchant, room,
SKU and a live flash sale) set up through the running services' HTTP APIs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import httpx
import pytest_asyncio

from devstack.config import StackConfig
from devstack.stack import start_services
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints, eventually
from services.order.entrypoints.http import create_http_app
from services.order.settings import OrderSettings
from tests.e2e.checkout_world import INVENTORY, PROMOTION, SANDBOX
from tests.security.world import order_settings_on, serving

REFERRAL = "http://127.0.0.1:8106"
RUNNING = (INVENTORY, PROMOTION, REFERRAL, SANDBOX)


@pytest_asyncio.fixture
async def http(stack: StackEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the running inventory, promotion, referral and sandbox-payment processes
    (`make up`), once they are ready; started if they are not running (never restarted:
    other suites may be using them). Order is built in process by each test."""
    async with httpx.AsyncClient(timeout=60.0) as client:
        if not all([await ready(client, base) for base in RUNNING]):
            await asyncio.to_thread(start_services, StackConfig(), restart=False)
        for base in RUNNING:
            await eventually(partial(ready, client, base), f"{base} to be ready", within=90.0)
        yield client


async def ready(client: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await client.get(f"{base}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest_asyncio.fixture
async def order_settings(stack: StackEndpoints) -> AsyncIterator[OrderSettings]:
    async with scratch_database(stack, "order_security") as dsn:
        yield order_settings_on(
            stack,
            dsn,
            buy_limit_per_user="5/30 seconds",
            buy_limit_per_address="1000/10 seconds",
        )


def order_client(
    settings: OrderSettings, **changes: Any
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """The order API in process, with ``changes`` to its settings."""
    return serving(create_http_app(settings.model_copy(update=changes)), "http://order")
