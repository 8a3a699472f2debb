"""Inventory's worker: the outbox relay, the stock-levels projection, the release of the
holds of cancelled and refunded orders, the hold sweeper, the end of sales at their time,
and the periodic reconciliation of Redis with the store."""

from __future__ import annotations

import asyncio

from livecommerce.inventory.v1 import events_pb2
from services.inventory.adapters.ledger import SALE_END_TIMER
from services.inventory.adapters.stock_levels import project_stock_received
from services.inventory.bootstrap import inventory
from services.inventory.entrypoints.consumers import ORDERS_CONSUMER, order_event_handlers
from services.inventory.settings import InventorySettings
from services.kit.db import Connection
from services.kit.event_worker import Subscription, event_plumbing
from services.kit.metrics import serve_metrics
from services.kit.runtime import run_all, run_periodically
from services.kit.timers import Timer, TimerWorker

STOCK_LEVELS_CONSUMER = "inventory-stock-levels"


async def run_worker(settings: InventorySettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    async with inventory(settings) as parts:
        flash_sales = parts.flash_sales

        async def end_sale(timer: Timer, conn: Connection) -> None:
            await flash_sales.end(timer.merchant_id, str(timer.payload["sale_id"]))

        subscriptions = [
            Subscription(
                STOCK_LEVELS_CONSUMER,
                [settings.events_topic],
                {events_pb2.StockReceived.DESCRIPTOR.full_name: project_stock_received},
                loop="stock-levels",
            ),
            Subscription(
                ORDERS_CONSUMER,
                [settings.order_events_topic],
                order_event_handlers(flash_sales),
                loop="orders",
            ),
        ]
        sale_ends = TimerWorker(pool=parts.pool, kind=SALE_END_TIMER, handler=end_sale)
        async with event_plumbing(
            settings, pool=parts.pool, store=parts.store, subscriptions=subscriptions
        ) as plumbing:
            await run_all(
                stop,
                {
                    **plumbing.loops(stop),
                    "sale-ends": sale_ends.run(stop),
                    "sweeper": run_periodically(
                        settings.sweep_interval_seconds, stop, flash_sales.sweep
                    ),
                    "reconcile": run_periodically(
                        settings.reconcile_interval_seconds, stop, flash_sales.reconcile
                    ),
                },
            )


async def reconcile_once(settings: InventorySettings) -> int:
    """The reconciliation command: print each drift; exit 1 if Redis and the store differ."""
    async with inventory(settings) as parts:
        drifts = await parts.flash_sales.reconcile()
    for drift in drifts:
        print(
            f"drift: sale {drift.merchant_id}/{drift.sale_id} {drift.figure}:"
            f" redis={drift.redis} store={drift.store}"
        )
    print("redis and the event store agree" if not drifts else f"{len(drifts)} drift(s)")
    return 1 if drifts else 0
