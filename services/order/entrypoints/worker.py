"""Order's worker: the outbox relay to order.events, the durable timers (unpaid timeout,
auto-completion, refund retries) and the consumer of promotion's group-buy outcomes."""

from __future__ import annotations

import asyncio

import asyncpg

from livecommerce.promotion.v1 import events_pb2 as promotion_events
from services.kit.consumer import ConsumedEvent, Handler
from services.kit.db import Connection
from services.kit.event_worker import Subscription, event_plumbing
from services.kit.logging import get_logger
from services.kit.metrics import serve_metrics
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
    async with order_service(settings) as service:
        group_buys = Subscription(
            GROUPS_CONSUMER,
            [settings.promotion_events_topic],
            {
                promotion_events.GroupFailed.DESCRIPTOR.full_name: group_failed_handler(
                    service.orders
                ),
                promotion_events.GroupPaymentRejected.DESCRIPTOR.full_name: (
                    group_payment_rejected_handler(service.orders)
                ),
            },
            loop="group-buys",
        )
        timers = timer_workers(service.orders, service.pool, settings.timer_poll_seconds)
        async with event_plumbing(
            settings, pool=service.pool, store=service.store.events, subscriptions=[group_buys]
        ) as plumbing:
            await run_all(
                stop,
                {
                    **plumbing.loops(stop),
                    **{kind: worker.run(stop) for kind, worker in timers.items()},
                },
            )
