"""The consumer runner against real Postgres and the real broker: effects and inbox in one
transaction, redeliveries applied once, dead letters with their reason, transient failures
retried, and offsets committed only after handling."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit.consumer import ConsumedEvent, ConsumerRunner
from services.kit.context import current_context
from services.kit.db import Connection
from services.kit.errors import InvalidArgumentError
from services.kit.kafka import consumer_options, ensure_topics, new_consumer, new_producer
from services.kit.settings import ServiceSettings
from services.kit.testing import StackEndpoints, TestDatabase, eventually, unique

DEADLINE_SECONDS = 20.0
NOTED = "test.Noted"


def envelope(note: str, *, event_type: str = NOTED, correlation_id: str = "") -> Envelope:
    return Envelope(
        event_id=str(uuid4()),
        event_type=event_type,
        aggregate_type="thing",
        aggregate_id="thing-1",
        aggregate_version=1,
        merchant_id="m1",
        correlation_id=correlation_id,
        payload=note.encode(),
    )


@dataclass
class NotingHandler:
    """Writes one row per applied event in the runner's transaction; some notes misbehave."""

    calls: Counter[str] = field(default_factory=Counter)

    async def __call__(self, event: ConsumedEvent, conn: Connection) -> None:
        note = event.envelope.payload.decode()
        self.calls[note] += 1
        context = current_context()
        await conn.execute(
            "INSERT INTO applied (event_id, note, correlation_id, causation_id)"
            " VALUES ($1, $2, $3, $4)",
            event.event_id,
            note,
            context.correlation_id,
            context.causation_id,
        )
        if note == "rejected":
            raise InvalidArgumentError("this event is wrong for this state")
        if note == "flaky" and self.calls[note] <= 2:
            raise ConnectionError("the database blinked")
        if note == "broken":
            raise RuntimeError("a bug that retrying does not fix")


@dataclass
class Consuming:
    database: TestDatabase
    settings: ServiceSettings
    topic: str
    name: str
    producer: AIOKafkaProducer
    handler: NotingHandler

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}.dlq"

    def partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in range(self.settings.kafka_partitions)]

    def runner(self, consumer: AIOKafkaConsumer) -> ConsumerRunner:
        return ConsumerRunner(
            name=self.name,
            consumer=consumer,
            dead_letters=self.producer,
            pool=self.database.pool,
            handlers={NOTED: self.handler},
            attempts=3,
            retry_wait_max=0.1,
        )

    async def send(self, value: bytes, key: bytes = b"thing-1") -> None:
        await self.producer.send_and_wait(self.topic, value=value, key=key)

    async def applied(self) -> list[tuple[UUID, str, str, str]]:
        rows = await self.database.pool.fetch(
            "SELECT event_id, note, correlation_id, causation_id FROM applied ORDER BY seq"
        )
        return [(r["event_id"], r["note"], r["correlation_id"], r["causation_id"]) for r in rows]

    async def applied_count(self) -> int:
        value: int = await self.database.pool.fetchval("SELECT count(*) FROM applied")
        return value


async def read_all_of(
    settings: ServiceSettings, topic: str, expected: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message on a topic, without a consumer group: waits for ``expected`` and then
    a few empty polls more to catch any extra."""
    options = consumer_options(settings, "unused")
    options["group_id"] = None
    reader = AIOKafkaConsumer(**options)
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, p) for p in range(settings.kafka_partitions)])
        found: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + DEADLINE_SECONDS
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            batches = await reader.getmany(timeout_ms=100)
            got = [r for records in batches.values() for r in records]
            found.extend(got)
            quiet = quiet + 1 if not got and len(found) >= expected else 0
        return found
    finally:
        await reader.stop()


@pytest_asyncio.fixture
async def consuming(database: TestDatabase, stack: StackEndpoints) -> AsyncIterator[Consuming]:
    settings = database.settings(stack.kafka_bootstrap)
    topic = settings.events_topic
    name = unique("consumer")
    await ensure_topics(settings, [topic, f"{name}.dlq"])
    await database.pool.execute(
        "CREATE TABLE applied (seq bigserial PRIMARY KEY, event_id uuid NOT NULL,"
        " note text NOT NULL, correlation_id text NOT NULL, causation_id text NOT NULL)"
    )
    producer = new_producer(settings)
    await producer.start()
    try:
        yield Consuming(database, settings, topic, name, producer, NotingHandler())
    finally:
        await producer.stop()


async def test_a_partition_moves_past_poison_messages_to_the_dead_letter_topic_and_commits(
    consuming: Consuming,
) -> None:
    first = envelope("first", correlation_id="corr-first")
    rejected = envelope("rejected")
    bad_id = Envelope(event_id="not-a-uuid", event_type=NOTED, payload=b"bad-id")
    flaky = envelope("flaky")
    unknown = envelope("unhandled", event_type="test.SomethingElse")
    broken = envelope("broken")
    last = envelope("last")
    sent: list[bytes] = [
        first.SerializeToString(),
        rejected.SerializeToString(),
        b"\xff\xff\xff not an envelope",
        bad_id.SerializeToString(),
        flaky.SerializeToString(),
        first.SerializeToString(),  # redelivered: the inbox must make it a no-op
        unknown.SerializeToString(),
        broken.SerializeToString(),
        last.SerializeToString(),
    ]
    for value in sent:
        await consuming.send(value)  # one key: one partition, in this order
    # A group member with a manual assignment: no group join, yet commits to the group.
    consumer = new_consumer(consuming.settings, consuming.name, [])
    await consumer.start()
    try:
        consumer.assign(consuming.partitions())
        runner = consuming.runner(consumer)
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run(stop))

        async def last_applied() -> bool:
            return any(note == "last" for _, note, _, _ in await consuming.applied())

        await eventually(last_applied, "the event after the poison ones is applied")
        stop.set()
        await asyncio.wait_for(running, DEADLINE_SECONDS)
        committed = [await consumer.committed(tp) for tp in consuming.partitions()]
    finally:
        await consumer.stop()

    applied = await consuming.applied()
    assert [(event_id, note) for event_id, note, _, _ in applied] == [
        (UUID(first.event_id), "first"),
        (UUID(flaky.event_id), "flaky"),
        (UUID(last.event_id), "last"),
    ]
    # The runner's message context: the envelope's correlation, caused by the event itself.
    assert applied[0][2:] == ("corr-first", first.event_id)
    assert applied[2][2:] == (last.event_id, last.event_id)  # no correlation: starts one
    assert consuming.handler.calls == Counter(
        {"first": 1, "rejected": 1, "flaky": 3, "broken": 3, "last": 1}
    )
    inbox = await consuming.database.pool.fetch("SELECT consumer, event_id FROM inbox")
    assert {(r["consumer"], r["event_id"]) for r in inbox} == {
        (consuming.name, UUID(e.event_id)) for e in (first, flaky, last)
    }
    assert sorted(c for c in committed if c is not None) == [len(sent)]  # one key, one partition

    dead = await read_all_of(consuming.settings, consuming.dead_letter_topic, 4)
    reasons = {r.value: dict(r.headers)["reason"].decode() for r in dead}
    assert len(dead) == 4
    assert set(reasons) == {sent[1], sent[2], sent[3], sent[7]}
    assert reasons[sent[1]] == "InvalidArgumentError: this event is wrong for this state"
    assert reasons[sent[2]].startswith("undecodable: ")
    assert reasons[sent[3]].startswith("undecodable: ")
    assert reasons[sent[7]] == "RuntimeError: a bug that retrying does not fix"
    for record in dead:
        assert record.key == b"thing-1"
        source = dict(record.headers)["source"].decode()
        assert source.startswith(f"{consuming.topic}/")
        assert int(source.rsplit("/", 1)[1]) == sent.index(record.value)


@pytest_asyncio.fixture
async def idle_runner(consuming: Consuming) -> AsyncIterator[ConsumerRunner]:
    """A runner whose consumer never starts: ``apply`` needs only Postgres."""
    consumer = new_consumer(consuming.settings, consuming.name, [])
    try:
        yield consuming.runner(consumer)
    finally:
        await consumer.stop()


async def test_applying_the_same_event_twice_or_concurrently_applies_it_once(
    consuming: Consuming, idle_runner: ConsumerRunner
) -> None:
    runner = idle_runner
    once = ConsumedEvent(envelope("once"), consuming.topic, 0, 0)
    racing = ConsumedEvent(envelope("racing"), consuming.topic, 0, 1)

    first = await runner.apply(consuming.handler, once)
    again = await runner.apply(consuming.handler, once)
    raced = await asyncio.gather(*(runner.apply(consuming.handler, racing) for _ in range(8)))

    assert (first, again) == ("applied", "duplicate")
    assert sorted(raced) == ["applied"] + ["duplicate"] * 7
    assert [note for _, note, _, _ in await consuming.applied()] == ["once", "racing"]
    assert consuming.handler.calls == Counter({"once": 1, "racing": 1})


async def test_a_failed_handler_leaves_neither_its_writes_nor_an_inbox_row(
    consuming: Consuming, idle_runner: ConsumerRunner
) -> None:
    runner = idle_runner
    broken = ConsumedEvent(envelope("broken"), consuming.topic, 0, 0)

    outcome: BaseException | str
    try:
        outcome = await runner.apply(consuming.handler, broken)
    except RuntimeError as error:
        outcome = error

    assert isinstance(outcome, RuntimeError)
    assert await consuming.applied_count() == 0
    assert await consuming.database.pool.fetchval("SELECT count(*) FROM inbox") == 0


async def test_a_new_consumer_in_the_group_resumes_after_the_committed_offsets(
    consuming: Consuming,
) -> None:
    before = [envelope(f"before-{i}") for i in range(4)]
    for event in before:
        await consuming.send(event.SerializeToString())

    # A manually assigned member of the group first, then a subscribed one joining the group:
    # the order that needs one group join only. (The other order needs two: the local broker
    # keeps a member that left the group until its session times out, rejects the commits of
    # a manually assigned consumer until then, and lets a new member join only after that.)
    first_consumer = new_consumer(consuming.settings, consuming.name, [])
    await first_consumer.start()
    first_consumer.assign(consuming.partitions())
    try:
        stop = asyncio.Event()
        running = asyncio.create_task(consuming.runner(first_consumer).run(stop))

        async def all_before_applied() -> bool:
            return await consuming.applied_count() == len(before)

        await eventually(all_before_applied, "the first consumer applied every event")
        stop.set()
        await asyncio.wait_for(running, DEADLINE_SECONDS)
    finally:
        await first_consumer.stop()

    # Forget what the inbox knows: only the committed offsets can now prevent a re-handle.
    await consuming.database.pool.execute("DELETE FROM inbox")
    await consuming.database.pool.execute("DELETE FROM applied")
    after = [envelope(f"after-{i}") for i in range(2)]
    for event in after:
        await consuming.send(event.SerializeToString())

    second_consumer = new_consumer(consuming.settings, consuming.name, [consuming.topic])
    await second_consumer.start()  # joins the group: returns once partitions are assigned
    try:
        stop = asyncio.Event()
        running = asyncio.create_task(consuming.runner(second_consumer).run(stop))

        async def all_after_applied() -> bool:
            return await consuming.applied_count() == len(after)

        await eventually(all_after_applied, "the second consumer applied the new events")
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(running, DEADLINE_SECONDS)
        committed = [await second_consumer.committed(tp) for tp in consuming.partitions()]
    finally:
        await second_consumer.stop()

    assert [note for _, note, _, _ in await consuming.applied()] == ["after-0", "after-1"]
    assert sorted(c for c in committed if c is not None) == [len(before) + len(after)]
    assert consuming.handler.calls == Counter(
        {f"before-{i}": 1 for i in range(4)} | {f"after-{i}": 1 for i in range(2)}
    )
