"""The consumer runner: Kafka events in, handlers applied effectively once.

For each event the runner opens a Postgres transaction, records the event id in the inbox
and calls the handler with that transaction's connection; the handler's own writes (events
it appends, read models it updates, timers it schedules) commit together with the inbox
row. A redelivered event finds its inbox row and changes nothing. Offsets are committed
to Kafka only after the events before them were handled.

An event that cannot be decoded, or whose handler raises a :class:`KitError` (the event is
wrong for this state, retrying cannot help), or keeps failing after retries, goes to the
consumer's dead-letter topic ``<consumer>.dlq`` with the reason, and the partition moves on.
Side effects outside Postgres (Redis, gRPC) must themselves be idempotent on the event id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from google.protobuf.message import DecodeError, Message
from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit import metrics
from services.kit.context import MessageContext, message_context
from services.kit.db import Connection
from services.kit.errors import KitError
from services.kit.logging import get_logger

log = get_logger(__name__)

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class ConsumedEvent:
    envelope: Envelope
    topic: str
    partition: int
    offset: int

    @property
    def event_id(self) -> UUID:
        return UUID(self.envelope.event_id)

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    def payload(self, message_type: type[M]) -> M:
        message = message_type()
        message.ParseFromString(self.envelope.payload)
        return message


Handler = Callable[[ConsumedEvent, Connection], Awaitable[None]]


class _Undecodable(Exception):
    pass


class ConsumerRunner:
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        dead_letters: AIOKafkaProducer,
        pool: asyncpg.Pool,
        handlers: Mapping[str, Handler],
        attempts: int = 5,
        retry_wait_max: float = 2.0,
    ) -> None:
        """``name`` is the consumer group id and the inbox's consumer name."""
        self.name = name
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._pool = pool
        self._handlers = dict(handlers)
        self._attempts = attempts
        self._retry_wait_max = retry_wait_max

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}.dlq"

    async def run(self, stop: asyncio.Event) -> None:
        log.info("consumer started", consumer=self.name, handles=sorted(self._handlers))
        while not stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=200)
            for partition, records in batches.items():
                await self.handle_batch(partition, records)

    async def handle_batch(
        self, partition: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        for record in records:
            await self._handle(record)
        if records:
            await self._consumer.commit({partition: OffsetAndMetadata(records[-1].offset + 1, "")})

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = self._decode(record)
        except _Undecodable as error:
            await self._dead_letter(record, f"undecodable: {error}")
            return
        handler = self._handlers.get(event.event_type)
        if handler is None:
            metrics.CONSUMED.labels(self.name, "ignored").inc()
            return
        context = MessageContext(
            correlation_id=event.envelope.correlation_id or event.envelope.event_id,
            causation_id=event.envelope.event_id,
            trace_context=dict(event.envelope.trace_context),
        )
        started = time.perf_counter()
        try:
            with message_context(context):
                outcome = await self._apply_with_retries(handler, event)
        except Exception as error:
            log.warning(
                "event dead-lettered",
                consumer=self.name,
                event_id=event.envelope.event_id,
                event_type=event.event_type,
                error=repr(error),
            )
            await self._dead_letter(record, f"{type(error).__name__}: {error}")
            return
        metrics.CONSUMED.labels(self.name, outcome).inc()
        metrics.CONSUMER_LATENCY.labels(self.name).observe(time.perf_counter() - started)

    async def _apply_with_retries(self, handler: Handler, event: ConsumedEvent) -> str:
        outcome = "applied"
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.05, max=self._retry_wait_max),
            retry=retry_if_not_exception_type(KitError),
            reraise=True,
        ):
            with attempt:
                outcome = await self.apply(handler, event)
        return outcome

    async def apply(self, handler: Handler, event: ConsumedEvent) -> str:
        """Apply one event in one transaction with its inbox row; 'duplicate' if seen."""
        async with self._pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING true",
                self.name,
                event.event_id,
            )
            if not first_time:
                return "duplicate"
            await handler(event, conn)
        return "applied"

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> ConsumedEvent:
        envelope = Envelope()
        try:
            envelope.ParseFromString(record.value or b"")
            UUID(envelope.event_id)
        except (DecodeError, ValueError) as error:
            raise _Undecodable(str(error) or "not an envelope") from error
        if not envelope.event_type:
            raise _Undecodable("envelope has no event type")
        return ConsumedEvent(envelope, record.topic, record.partition, record.offset)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        metrics.CONSUMED.labels(self.name, "dead_lettered").inc()
        headers = [
            ("reason", reason.encode()[:1000]),
            ("source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await self._dead_letters.send_and_wait(
            self.dead_letter_topic, value=record.value, key=record.key, headers=headers
        )
