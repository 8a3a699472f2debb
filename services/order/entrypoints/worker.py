"""Order's worker: the outbox relay to order.events, the durable timers (unpaid timeout,
auto-completion, refund retries) and the consumer of promotion's group-buy outcomes."""

from __future__ import annotations

import asyncio

import asyncpg

from livecommerce.promotion.v1 import events_pb2 as promotion_events
from services.kit.consumer import ConsumedEvent, ConsumerRunner, Handler
from services.kit.db import Connection
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.logging import get_logger
from services.kit.metrics import serve_metrics
from services.kit.outbox import KafkaPublisher, OutboxRelay
from services.kit.runtime import run_all
from services.kit.timers import Timer, TimerWorker
from services.order.application.orders import (
    AUTO_COMPLETE_TIMER,
    PAYMENT_DEADLINE_TIMER,
    REFUND_TIMER,
    Orders,
)
from services.order.bootstrap import order_service
from services.order.settings import OrderSettings

GROUPS_CONSUMER = "order-group-buys"
PROMOTION_TOPIC = "promotion.events"

log = get_logger(__name__)


def timer_workers(
    orders: Orders, pool: asyncpg.Pool, poll_seconds: float
) -> dict[str, TimerWorker]:
    async def payment_deadline(timer: Timer, conn: Connection) -> None:
        await orders.on_payment_deadline(timer.merchant_id, str(timer.payload["order_id"]))

    async def auto_complete(timer: Timer, conn: Connection) -> None:
        await orders.on_auto_complete(timer.merchant_id, str(timer.payload["order_id"]))

    async def refund(timer: Timer, conn: Connection) -> None:
        await orders.on_refund_timer(timer.merchant_id, str(timer.payload["order_id"]), timer.key)

    handlers = {
        PAYMENT_DEADLINE_TIMER: payment_deadline,
        AUTO_COMPLETE_TIMER: auto_complete,
        REFUND_TIMER: refund,
    }
    return {
        kind: TimerWorker(pool=pool, kind=kind, handler=handler, poll_interval=poll_seconds)
        for kind, handler in handlers.items()
    }


def group_failed_handler(orders: Orders) -> Handler:
    async def handle(event: ConsumedEvent, conn: Connection) -> None:
        failed = event.payload(promotion_events.GroupFailed)
        merchant_id = event.envelope.merchant_id
        for order_id in failed.order_ids:
            outcome = await orders.on_group_failed(merchant_id, order_id)
            log.info("group failed", group=failed.group_id, order=order_id, outcome=outcome)

    return handle


def group_payment_rejected_handler(orders: Orders) -> Handler:
    async def handle(event: ConsumedEvent, conn: Connection) -> None:
        rejected = event.payload(promotion_events.GroupPaymentRejected)
        outcome = await orders.on_group_failed(event.envelope.merchant_id, rejected.order_id)
        log.info(
            "group payment rejected",
            group=rejected.group_id,
            order=rejected.order_id,
            outcome=outcome,
        )

    return handle


async def run_worker(settings: OrderSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    topic = settings.events_topic
    await ensure_topics(settings, [topic, PROMOTION_TOPIC, f"{GROUPS_CONSUMER}.dlq"])
    async with order_service(settings) as service:
        producer = new_producer(settings)
        consumer = new_consumer(settings, GROUPS_CONSUMER, [PROMOTION_TOPIC])
        await producer.start()
        await consumer.start()
        try:
            relay = OutboxRelay(
                dsn=settings.postgres_dsn,
                store=service.store.events,
                publisher=KafkaPublisher(producer),
                service=settings.service_name,
                topic=topic,
            )
            groups = ConsumerRunner(
                name=GROUPS_CONSUMER,
                consumer=consumer,
                dead_letters=producer,
                pool=service.pool,
                handlers={
                    promotion_events.GroupFailed.DESCRIPTOR.full_name: group_failed_handler(
                        service.orders
                    ),
                    promotion_events.GroupPaymentRejected.DESCRIPTOR.full_name: (
                        group_payment_rejected_handler(service.orders)
                    ),
                },
            )
            timers = timer_workers(service.orders, service.pool, settings.timer_poll_seconds)
            await run_all(
                stop,
                {
                    "relay": relay.run(stop),
                    "group-buys": groups.run(stop),
                    **{kind: worker.run(stop) for kind, worker in timers.items()},
                },
            )
        finally:
            await consumer.stop()
            await producer.stop()
