"""The outbox relay: the only way events leave a service for Kafka.

The events table is the outbox. The relay reads events after its recorded position, in
position order, publishes each to the service's topic keyed by aggregate id (so one
aggregate's events stay in one partition, in order), waits for the broker's acks, and only
then records the new position. A crash between publish and record republishes a few events
on restart; that is harmless because every consumer dedupes on the event id.

Exactly one relay of a service publishes at a time: it holds a session advisory lock on its
own connection, and a standby replica waits for the lock. Appends NOTIFY the relay so it
wakes at once; it also polls, so a lost notification only costs a poll interval.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from aiokafka import AIOKafkaProducer

from services.kit import metrics
from services.kit.eventstore import NOTIFY_CHANNEL, PostgresEventStore, StoredEvent
from services.kit.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes


class Publisher(Protocol):
    """Port: publish messages and return only once the broker has acknowledged all of them,
    each partition's messages in the order given."""

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None: ...


class KafkaPublisher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        # aiokafka keeps one batch in flight per partition, so send order is partition order.
        acks = [await self._producer.send(m.topic, value=m.value, key=m.key) for m in messages]
        await asyncio.gather(*acks)


class OutboxRelay:
    def __init__(
        self,
        *,
        dsn: str,
        store: PostgresEventStore,
        publisher: Publisher,
        service: str,
        topic: str,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        search_path: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._store = store
        self._publisher = publisher
        self._service = service
        self._topic = topic
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._server_settings = {"search_path": search_path} if search_path else None
        self._wake = asyncio.Event()
        self.position = 0

    @property
    def name(self) -> str:
        return f"{self._service}->{self._topic}"

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set. Holds the relay lock for as long as it runs."""
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, server_settings=self._server_settings
        )
        try:
            await self._acquire_lock(conn, stop)
            if stop.is_set():
                return
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self.position = await self._recorded_position(conn)
            log.info("relay started", relay=self.name, position=self.position)
            while not stop.is_set():
                self._wake.clear()
                published = await self.publish_once(conn)
                if published == 0:
                    await self._sleep(stop)
        finally:
            await conn.close()

    async def publish_once(self, conn: asyncpg.Connection) -> int:
        """Publish the next batch after the recorded position; return how many."""
        events = await self._store.read_all(self.position, self._batch_size)
        if not events:
            metrics.RELAY_LAG.labels(self._service).set(0)
            return 0
        await self._publisher.publish([self._message(e) for e in events])
        self.position = events[-1].position
        await conn.execute(
            "INSERT INTO relay_positions (relay, position) VALUES ($1, $2)"
            " ON CONFLICT (relay) DO UPDATE SET position = $2, updated_at = now()",
            self.name,
            self.position,
        )
        metrics.RELAY_PUBLISHED.labels(self._service).inc(len(events))
        metrics.RELAY_POSITION.labels(self._service).set(self.position)
        metrics.RELAY_LAG.labels(self._service).set(
            max(0, await self._store.last_position() - self.position)
        )
        return len(events)

    def _message(self, event: StoredEvent) -> OutgoingMessage:
        envelope = event.to_envelope(producer=self._service)
        return OutgoingMessage(
            topic=self._topic,
            key=event.stream_id.encode(),
            value=envelope.SerializeToString(),
        )

    async def _recorded_position(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval(
            "SELECT position FROM relay_positions WHERE relay = $1", self.name
        )
        return int(value or 0)

    async def _acquire_lock(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        key = zlib.crc32(self.name.encode())
        while not stop.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                return
            log.info("relay on standby: another replica holds the lock", relay=self.name)
            await self._sleep(stop, self._poll_interval * 4)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _sleep(self, stop: asyncio.Event, seconds: float | None = None) -> None:
        stopped = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {stopped, woken},
                timeout=seconds or self._poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (stopped, woken):
                task.cancel()
