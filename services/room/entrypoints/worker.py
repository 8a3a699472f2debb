"""Room's worker: the outbox relay, the reminder timers and their delivery, the presence
sweep (viewers who stopped sending heartbeats leave), and the feed of other services'
events (campaigns, coupon drops, stock left) to the rooms' viewers."""

from __future__ import annotations

import asyncio

from services.kit.event_worker import Subscription, event_plumbing
from services.kit.metrics import serve_metrics
from services.kit.runtime import run_all, run_periodically
from services.kit.timers import TimerWorker
from services.room.adapters.rooms import REMINDER_TIMER
from services.room.bootstrap import room_service
from services.room.entrypoints.consumers import FEED_CONSUMER, feed_handlers
from services.room.settings import RoomSettings


async def run_worker(settings: RoomSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    async with room_service(settings) as parts:
        feed = Subscription(
            FEED_CONSUMER,
            [settings.promotion_events_topic, settings.inventory_events_topic],
            feed_handlers(parts.feed),
            loop="feed",
        )
        reminder_timers = TimerWorker(
            pool=parts.pool, kind=REMINDER_TIMER, handler=parts.reminders.on_timer
        )
        async with event_plumbing(
            settings, pool=parts.pool, store=parts.store, subscriptions=[feed]
        ) as plumbing:
            await run_all(
                stop,
                {
                    **plumbing.loops(stop),
                    "reminder-timers": reminder_timers.run(stop),
                    "reminder-delivery": run_periodically(
                        settings.reminder_delivery_interval_seconds,
                        stop,
                        parts.reminders.deliver_due,
                    ),
                    "presence-sweep": run_periodically(
                        settings.presence_sweep_interval_seconds, stop, parts.viewers.sweep
                    ),
                },
            )
