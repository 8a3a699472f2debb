"""Build the inventory service's parts once per process, for any entry point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from services.inventory.adapters.ledger import SaleLedger
from services.inventory.adapters.redis_stock import RESTOCK_CHANNEL, RedisFlashStock
from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.application.flash_sales import FlashSales
from services.inventory.settings import InventorySettings
from services.kit.db import database
from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.logging import get_logger
from services.kit.redis import create_redis
from services.kit.sold_out import SoldOutMemory

SCHEMA_PACKAGES = ["services.inventory"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Inventory:
    settings: InventorySettings
    pool: asyncpg.Pool
    redis: Redis
    store: PostgresEventStore
    stock: EventSourcedStockRepository
    ledger: SaleLedger
    flash_sales: FlashSales


def assemble(
    settings: InventorySettings,
    pool: asyncpg.Pool,
    redis: Redis,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Inventory:
    """The service's parts on a pool and a Redis client the caller opened (and closes, with
    the ledger's connection: ``await parts.ledger.close()``)."""
    store = PostgresEventStore(pool, settings.service_name)
    ledger = SaleLedger(pool, store, group_commits=settings.reserve_group_commits)
    return Inventory(
        settings=settings,
        pool=pool,
        redis=redis,
        store=store,
        stock=EventSourcedStockRepository(store),
        ledger=ledger,
        flash_sales=FlashSales(
            ledger,
            RedisFlashStock(redis),
            clock=clock,
            max_batch=settings.reserve_max_batch,
            decide_interval=settings.reserve_decide_interval_ms / 1000,
            sold_out_ttl=settings.sold_out_memory_seconds,
        ),
    )


@asynccontextmanager
async def inventory(
    settings: InventorySettings, *, clock: Callable[[], datetime] = utcnow
) -> AsyncIterator[Inventory]:
    """``clock`` is the time the sale windows and hold expiries are judged by (tests move it)."""
    async with database(settings, SCHEMA_PACKAGES) as pool:
        redis = create_redis(settings.redis_url)
        parts = assemble(settings, pool, redis, clock=clock)
        try:
            yield parts
        finally:
            await parts.ledger.close()
            await redis.aclose()


async def forget_sold_out_on_restock(
    redis: Redis, memory: SoldOutMemory, stop: asyncio.Event
) -> None:
    """Listen for restock announcements and forget the sold-out answers they contradict."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(RESTOCK_CHANNEL)
    try:
        while not stop.is_set():
            message = await pubsub.get_message(timeout=0.5)
            if message and isinstance(message.get("data"), str):
                merchant, _, sale_id = message["data"].partition(":")
                memory.forget(merchant, sale_id)
    finally:
        with suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
