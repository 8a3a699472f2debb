"""Referral's worker: the outbox relay, the room.events and order.events consumers, the
commission-release timers and the retry of payouts that did not land."""

from __future__ import annotations

import asyncio

from services.kit.consumer import ConsumerRunner
from services.kit.db import Connection
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.metrics import serve_metrics
from services.kit.outbox import KafkaPublisher, OutboxRelay
from services.kit.runtime import run_all, run_periodically
from services.kit.timers import Timer, TimerWorker
from services.referral.adapters.book import RELEASE_TIMER
from services.referral.application.commission import release_commission
from services.referral.application.withdrawals import pay
from services.referral.bootstrap import Referral, referral
from services.referral.entrypoints.consumers import (
    ORDERS_CONSUMER,
    ROOMS_CONSUMER,
    order_event_handlers,
    room_event_handlers,
)
from services.referral.settings import ReferralSettings


def release_timer_handler(parts: Referral) -> TimerWorker:
    async def release(timer: Timer, conn: Connection) -> None:
        await release_commission(
            timer.merchant_id, str(timer.payload["order_id"]), parts.books.on(conn)
        )

    return TimerWorker(pool=parts.pool, kind=RELEASE_TIMER, handler=release)


async def pay_approved(parts: Referral) -> int:
    """Pay every approved withdrawal whose payout failed before; how many were tried."""
    pending = await parts.queries.approved_unpaid()
    for merchant_id, withdrawal_id in pending:
        await pay(merchant_id, withdrawal_id, parts.books, parts.payouts)
    return len(pending)


async def run_worker(settings: ReferralSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    rooms_topic, orders_topic = settings.room_events_topic, settings.order_events_topic
    await ensure_topics(
        settings,
        [
            settings.events_topic,
            rooms_topic,
            orders_topic,
            f"{ROOMS_CONSUMER}.dlq",
            f"{ORDERS_CONSUMER}.dlq",
        ],
    )
    async with referral(settings) as parts:
        producer = new_producer(settings)
        rooms_consumer = new_consumer(settings, ROOMS_CONSUMER, [rooms_topic])
        orders_consumer = new_consumer(settings, ORDERS_CONSUMER, [orders_topic])
        await producer.start()
        await rooms_consumer.start()
        await orders_consumer.start()
        try:
            relay = OutboxRelay(
                dsn=settings.postgres_dsn,
                store=parts.store,
                publisher=KafkaPublisher(producer),
                service=settings.service_name,
                topic=settings.events_topic,
            )
            rooms = ConsumerRunner(
                name=ROOMS_CONSUMER,
                consumer=rooms_consumer,
                dead_letters=producer,
                pool=parts.pool,
                handlers=room_event_handlers(parts),
            )
            orders = ConsumerRunner(
                name=ORDERS_CONSUMER,
                consumer=orders_consumer,
                dead_letters=producer,
                pool=parts.pool,
                handlers=order_event_handlers(parts),
            )
            await run_all(
                stop,
                {
                    "relay": relay.run(stop),
                    "rooms": rooms.run(stop),
                    "orders": orders.run(stop),
                    "releases": release_timer_handler(parts).run(stop),
                    "payouts": run_periodically(
                        settings.payout_retry_interval_seconds, stop, lambda: pay_approved(parts)
                    ),
                },
            )
        finally:
            await orders_consumer.stop()
            await rooms_consumer.stop()
            await producer.stop()
