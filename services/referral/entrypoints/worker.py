"""Referral's worker: the outbox relay, the room.events and order.events consumers, the
commission-release timers and the retry of payouts that did not land."""

from __future__ import annotations

import asyncio

from services.kit.db import Connection
from services.kit.event_worker import Subscription, event_plumbing
from services.kit.metrics import serve_metrics
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
    async with referral(settings) as parts:
        subscriptions = [
            Subscription(
                ROOMS_CONSUMER,
                [settings.room_events_topic],
                room_event_handlers(parts),
                loop="rooms",
            ),
            Subscription(
                ORDERS_CONSUMER,
                [settings.order_events_topic],
                order_event_handlers(parts),
                loop="orders",
            ),
        ]
        async with event_plumbing(
            settings, pool=parts.pool, store=parts.store, subscriptions=subscriptions
        ) as plumbing:
            await run_all(
                stop,
                {
                    **plumbing.loops(stop),
                    "releases": release_timer_handler(parts).run(stop),
                    "payouts": run_periodically(
                        settings.payout_retry_interval_seconds, stop, lambda: pay_approved(parts)
                    ),
                },
            )
