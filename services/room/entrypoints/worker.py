"""Room's worker: the outbox relay, the reminder timers and their delivery, the presence
sweep (viewers who stopped sending heartbeats leave), and the feed of other services'
events (campaigns, coupon drops, stock left) to the rooms' viewers."""

from __future__ import annotations

import asyncio

from services.kit.consumer import ConsumerRunner
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.metrics import serve_metrics
from services.kit.outbox import KafkaPublisher, OutboxRelay
from services.kit.runtime import run_all, run_periodically
from services.kit.timers import TimerWorker
from services.room.adapters.rooms import REMINDER_TIMER
from services.room.bootstrap import room_service
from services.room.entrypoints.consumers import FEED_CONSUMER, feed_handlers
from services.room.settings import RoomSettings


async def run_worker(settings: RoomSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    feed_topics = [settings.promotion_events_topic, settings.inventory_events_topic]
    await ensure_topics(settings, [settings.events_topic, *feed_topics, f"{FEED_CONSUMER}.dlq"])
    async with room_service(settings) as parts:
        producer = new_producer(settings)
        consumer = new_consumer(settings, FEED_CONSUMER, feed_topics)
        await producer.start()
        await consumer.start()
        try:
            feed = ConsumerRunner(
                name=FEED_CONSUMER,
                consumer=consumer,
                dead_letters=producer,
                pool=parts.pool,
                handlers=feed_handlers(parts.feed),
            )
            relay = OutboxRelay(
                dsn=settings.postgres_dsn,
                store=parts.store,
                publisher=KafkaPublisher(producer),
                service=settings.service_name,
                topic=settings.events_topic,
            )
            reminder_timers = TimerWorker(
                pool=parts.pool, kind=REMINDER_TIMER, handler=parts.reminders.on_timer
            )
            await run_all(
                stop,
                {
                    "relay": relay.run(stop),
                    "feed": feed.run(stop),
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
        finally:
            await consumer.stop()
            await producer.stop()
