"""Inventory's worker: the outbox relay and the consumers, in one process."""

from __future__ import annotations

import asyncio

from livecommerce.inventory.v1 import events_pb2
from services.inventory.adapters.stock_levels import project_stock_received
from services.inventory.entrypoints.http import SCHEMA_PACKAGES
from services.inventory.settings import InventorySettings
from services.kit.consumer import ConsumerRunner
from services.kit.db import database
from services.kit.eventstore import PostgresEventStore
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.metrics import serve_metrics
from services.kit.outbox import KafkaPublisher, OutboxRelay
from services.kit.runtime import run_all

STOCK_LEVELS_CONSUMER = "inventory-stock-levels"


async def run_worker(settings: InventorySettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    topic = settings.events_topic
    consumer_name = STOCK_LEVELS_CONSUMER
    await ensure_topics(settings, [topic, f"{consumer_name}.dlq"])
    async with database(settings, SCHEMA_PACKAGES) as pool:
        producer = new_producer(settings)
        consumer = new_consumer(settings, consumer_name, [topic])
        await producer.start()
        await consumer.start()
        try:
            relay = OutboxRelay(
                dsn=settings.postgres_dsn,
                store=PostgresEventStore(pool, settings.service_name),
                publisher=KafkaPublisher(producer),
                service=settings.service_name,
                topic=topic,
            )
            stock_levels = ConsumerRunner(
                name=consumer_name,
                consumer=consumer,
                dead_letters=producer,
                pool=pool,
                handlers={events_pb2.StockReceived.DESCRIPTOR.full_name: project_stock_received},
            )
            await run_all(stop, {"relay": relay.run(stop), "stock-levels": stock_levels.run(stop)})
        finally:
            await consumer.stop()
            await producer.stop()
