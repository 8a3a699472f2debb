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
from services.kit.consumer import ConsumerRunner
from services.kit.db import Connection
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.metrics import serve_metrics
from services.kit.outbox import KafkaPublisher, OutboxRelay
from services.kit.runtime import run_all, run_periodically
from services.kit.timers import Timer, TimerWorker

STOCK_LEVELS_CONSUMER = "inventory-stock-levels"


async def run_worker(settings: InventorySettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    topic, orders_topic = settings.events_topic, settings.order_events_topic
    await ensure_topics(
        settings,
        [topic, f"{STOCK_LEVELS_CONSUMER}.dlq", orders_topic, f"{ORDERS_CONSUMER}.dlq"],
    )
    async with inventory(settings) as parts:
        producer = new_producer(settings)
        consumer = new_consumer(settings, STOCK_LEVELS_CONSUMER, [topic])
        order_consumer = new_consumer(settings, ORDERS_CONSUMER, [orders_topic])
        await producer.start()
        await consumer.start()
        await order_consumer.start()
        flash_sales = parts.flash_sales

        async def end_sale(timer: Timer, conn: Connection) -> None:
            await flash_sales.end(timer.merchant_id, str(timer.payload["sale_id"]))

        try:
            relay = OutboxRelay(
                dsn=settings.postgres_dsn,
                store=parts.store,
                publisher=KafkaPublisher(producer),
                service=settings.service_name,
                topic=topic,
            )
            stock_levels = ConsumerRunner(
                name=STOCK_LEVELS_CONSUMER,
                consumer=consumer,
                dead_letters=producer,
                pool=parts.pool,
                handlers={events_pb2.StockReceived.DESCRIPTOR.full_name: project_stock_received},
            )
            orders = ConsumerRunner(
                name=ORDERS_CONSUMER,
                consumer=order_consumer,
                dead_letters=producer,
                pool=parts.pool,
                handlers=order_event_handlers(flash_sales),
            )
            sale_ends = TimerWorker(pool=parts.pool, kind=SALE_END_TIMER, handler=end_sale)
            await run_all(
                stop,
                {
                    "relay": relay.run(stop),
                    "stock-levels": stock_levels.run(stop),
                    "orders": orders.run(stop),
                    "sale-ends": sale_ends.run(stop),
                    "sweeper": run_periodically(
                        settings.sweep_interval_seconds, stop, flash_sales.sweep
                    ),
                    "reconcile": run_periodically(
                        settings.reconcile_interval_seconds, stop, flash_sales.reconcile
                    ),
                },
            )
        finally:
            await order_consumer.stop()
            await consumer.stop()
            await producer.stop()


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
