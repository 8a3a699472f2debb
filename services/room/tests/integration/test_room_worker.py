"""The room worker as it runs in production: the outbox relay publishes room events to the
service's topic, the reminder timers fire and reminders are delivered, and viewers who
stopped sending heartbeats are swept out."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from livecommerce.kit.v1.envelope_pb2 import Envelope
from livecommerce.room.v1 import events_pb2 as pb
from services.kit.identity import Caller, Role
from services.kit.kafka import consumer_options
from services.kit.testing import unique
from services.room.bootstrap import room_service
from services.room.domain.reminders import SubscriptionTarget
from services.room.domain.room import ScheduleRoom
from services.room.domain.viewers import JoinRoom
from services.room.entrypoints.worker import run_worker
from services.room.settings import RoomSettings

DEADLINE_SECONDS = 20


async def room_events_on_topic(settings: RoomSettings, room_id: str) -> list[str]:
    options = consumer_options(settings, "unused")
    options["group_id"] = None
    consumer = AIOKafkaConsumer(**options)
    await consumer.start()
    try:
        consumer.assign(
            [TopicPartition(settings.events_topic, p) for p in range(settings.kafka_partitions)]
        )
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            envelopes = [Envelope.FromString(r.value) for rs in batches.values() for r in rs]
            mine = [e.event_type for e in envelopes if e.aggregate_id.endswith(f":{room_id}")]
            if mine:
                return mine
        return []
    finally:
        await consumer.stop()


async def test_the_worker_relays_events_delivers_reminders_and_sweeps_presence(
    room_settings: RoomSettings,
) -> None:
    settings = room_settings.model_copy(
        update={
            "service_name": unique("room"),
            "presence_timeout_seconds": 5,
            "presence_sweep_interval_seconds": 0.2,
            "reminder_delivery_interval_seconds": 0.2,
        }
    )
    merchant, room_id = unique("m"), unique("room")
    operator = Caller("op", frozenset({Role.OPERATOR}), merchant)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        async with room_service(settings) as service:
            await service.rooms.schedule(
                operator,
                ScheduleRoom(
                    merchant,
                    room_id,
                    unique("host"),
                    "Show",
                    "https://x.example/c.jpg",
                    ("app",),
                    None,
                    timedelta(hours=1),
                ),
            )
            await service.reminders.subscribe(
                Caller("fan", frozenset({Role.VIEWER}), merchant),
                merchant,
                SubscriptionTarget.ROOM,
                room_id,
            )
            await service.rooms.start(operator, merchant, room_id)
            await service.viewers.join(JoinRoom(merchant, room_id, "quiet", "app"))
            assert await room_events_on_topic(settings, room_id) == [
                pb.RoomScheduled.DESCRIPTOR.full_name,
                pb.RoomStarted.DESCRIPTOR.full_name,
            ]
            deadline = time.monotonic() + DEADLINE_SECONDS
            sent: list[asyncpg.Record] = []
            present = ["quiet"]
            while time.monotonic() < deadline and (not sent or present):
                await asyncio.sleep(0.2)
                sent = await service.pool.fetch(
                    "SELECT kind FROM reminder_deliveries"
                    " WHERE room_id = $1 AND sent_at IS NOT NULL",
                    room_id,
                )
                present = await service.viewers.present(merchant, room_id)
            # It went live before its lead time came: only the go-live reminder is owed.
            assert [row["kind"] for row in sent] == ["live"]
            assert present == []
    finally:
        stop.set()
        await worker
