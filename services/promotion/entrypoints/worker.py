"""Promotion's worker: the outbox relay to promotion.events, the consumer of order.events,
the durable timers (campaign starts and ends, group-buy deadlines) and the sweeper of claims
that never became durable."""

from __future__ import annotations

import asyncio

from services.kit.db import Connection
from services.kit.event_worker import Subscription, event_plumbing
from services.kit.metrics import serve_metrics
from services.kit.runtime import run_all, run_periodically
from services.kit.timers import Timer, TimerWorker
from services.promotion.adapters.campaign_book import CAMPAIGN_END_TIMER, CAMPAIGN_START_TIMER
from services.promotion.adapters.group_ledger import GROUP_DEADLINE_TIMER
from services.promotion.application.order_events import order_event_handlers
from services.promotion.bootstrap import Promotion, promotion
from services.promotion.settings import PromotionSettings

ORDER_EVENTS_CONSUMER = "promotion-order-events"


def timer_workers(parts: Promotion) -> dict[str, TimerWorker]:
    """The timer loops, by name (tests fire them by hand)."""

    async def start_campaign(timer: Timer, conn: Connection) -> None:
        await parts.campaigns.start_in(
            conn, timer.merchant_id, str(timer.payload["campaign_id"]), early=False
        )

    async def end_campaign(timer: Timer, conn: Connection) -> None:
        await parts.campaigns.stop_in(
            conn, timer.merchant_id, str(timer.payload["campaign_id"]), "finished"
        )

    async def group_deadline(timer: Timer, conn: Connection) -> None:
        await parts.groups.expire(conn, timer.merchant_id, str(timer.payload["group_id"]))

    return {
        "campaign-starts": TimerWorker(
            pool=parts.pool, kind=CAMPAIGN_START_TIMER, handler=start_campaign
        ),
        "campaign-ends": TimerWorker(
            pool=parts.pool, kind=CAMPAIGN_END_TIMER, handler=end_campaign
        ),
        "group-deadlines": TimerWorker(
            pool=parts.pool, kind=GROUP_DEADLINE_TIMER, handler=group_deadline
        ),
    }


async def run_worker(settings: PromotionSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    async with promotion(settings) as parts:
        order_events = Subscription(
            ORDER_EVENTS_CONSUMER,
            [settings.order_events_topic],
            order_event_handlers(parts.coupons, parts.groups),
            loop="order-events",
        )
        async with event_plumbing(
            settings, pool=parts.pool, store=parts.store, subscriptions=[order_events]
        ) as plumbing:
            loops = {name: worker.run(stop) for name, worker in timer_workers(parts).items()}
            sweeper = run_periodically(settings.sweep_interval_seconds, stop, parts.coupons.sweep)
            await run_all(stop, {**plumbing.loops(stop), "claim-sweeper": sweeper, **loops})
