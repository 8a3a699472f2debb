"""The outbox relay against real Postgres and the real broker: every event published once
per position, keyed by stream, in stream order; resuming from the recorded position; the
lost-record crash republishing (never losing); and one relay at a time per name."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit.context import MessageContext, message_context
from services.kit.eventstore import NewEvent, PostgresEventStore, StoredEvent, StreamAppend
from services.kit.kafka import consumer_options, ensure_topics, new_producer
from services.kit.outbox import KafkaPublisher, OutboxRelay, OutgoingMessage, Publisher
from services.kit.settings import ServiceSettings
from services.kit.testing import StackEndpoints, TestDatabase, eventually, unique

DEADLINE_SECONDS = 15.0


@dataclass(frozen=True)
class Published:
    partition: int
    offset: int
    key: bytes
    envelope: Envelope


@dataclass
class Outbox:
    """One test's service: its settings, topic, event store and a started producer."""

    database: TestDatabase
    settings: ServiceSettings
    store: PostgresEventStore
    producer: AIOKafkaProducer

    @property
    def topic(self) -> str:
        return self.settings.events_topic

    def relay(self, publisher: Publisher | None = None, **options: int) -> OutboxRelay:
        return OutboxRelay(
            dsn=self.database.dsn,
            store=self.store,
            publisher=publisher or KafkaPublisher(self.producer),
            service=self.settings.service_name,
            topic=self.topic,
            poll_interval=0.05,
            search_path=self.database.schema,
            **options,
        )

    async def connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.database.dsn, server_settings={"search_path": self.database.schema}
        )
        return conn

    async def recorded(self, relay: OutboxRelay) -> int | None:
        value: int | None = await self.database.pool.fetchval(
            "SELECT position FROM relay_positions WHERE relay = $1", relay.name
        )
        return value

    async def append(self, stream_id: str, expected_version: int, count: int) -> list[StoredEvent]:
        return await self.store.append(
            [
                StreamAppend(
                    stream_id=stream_id,
                    aggregate_type="thing",
                    merchant_id=f"merchant-of-{stream_id}",
                    expected_version=expected_version,
                    events=[
                        NewEvent(event_type="test.Happened", payload=f"{stream_id}/{v}".encode())
                        for v in range(expected_version + 1, expected_version + count + 1)
                    ],
                )
            ]
        )

    async def read_topic(self, expected: int) -> list[Published]:
        """Every message on the topic, waiting for ``expected`` of them and then a little
        longer to catch any extra (end offsets of the local broker are not relied on)."""
        options = consumer_options(self.settings, "unused")
        options["group_id"] = None
        consumer = AIOKafkaConsumer(**options)
        await consumer.start()
        try:
            consumer.assign(
                [TopicPartition(self.topic, p) for p in range(self.settings.kafka_partitions)]
            )
            found: list[Published] = []
            deadline = time.monotonic() + DEADLINE_SECONDS
            quiet_polls = 0
            while time.monotonic() < deadline and quiet_polls < 3:
                batches = await consumer.getmany(timeout_ms=100)
                got = [record for records in batches.values() for record in records]
                found.extend(
                    Published(r.partition, r.offset, r.key, Envelope.FromString(r.value))
                    for r in got
                )
                quiet_polls = quiet_polls + 1 if not got and len(found) >= expected else 0
            return found
        finally:
            await consumer.stop()


class RecordingPublisher:
    """The real Kafka publisher, remembering which positions went through it."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._inner = KafkaPublisher(producer)
        self.positions: list[int] = []

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._inner.publish(messages)
        self.positions.extend(Envelope.FromString(m.value).position for m in messages)


class RunningRelay:
    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(relay.run(self.stop))

    async def stopped(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, DEADLINE_SECONDS)

    async def killed(self) -> None:
        self.task.cancel()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), DEADLINE_SECONDS)


async def caught_up(outbox: Outbox, relay: OutboxRelay, position: int) -> None:
    async def there() -> bool:
        return await outbox.recorded(relay) == position

    await eventually(there, f"relay {relay.name} recorded position {position}")


@pytest_asyncio.fixture
async def outbox(database: TestDatabase, stack: StackEndpoints) -> AsyncIterator[Outbox]:
    settings = database.settings(stack.kafka_bootstrap)
    await ensure_topics(settings, [settings.events_topic])
    producer = new_producer(settings)
    await producer.start()
    try:
        yield Outbox(database, settings, PostgresEventStore(database.pool, "test"), producer)
    finally:
        await producer.stop()


def positions_of(published: Sequence[Published]) -> list[int]:
    return sorted(p.envelope.position for p in published)


async def test_the_relay_publishes_every_event_once_keyed_by_stream_in_stream_order(
    outbox: Outbox,
) -> None:
    streams = [f"order-{i}" for i in range(6)]  # fixed keys: a fixed spread over partitions
    stored: list[StoredEvent] = []
    context = MessageContext(correlation_id="corr-relay", causation_id="cause-relay")
    with message_context(context):
        for round_ in range(3):
            for stream in streams:
                stored += await outbox.append(stream, round_ * 2, 2)
    relay = RunningRelay(outbox.relay(batch_size=7))
    await caught_up(outbox, relay.relay, len(stored))
    # Appended while the relay runs: the notification (or the poll) wakes it.
    for stream in streams[:2]:
        stored += await outbox.append(stream, 6, 1)
    await caught_up(outbox, relay.relay, len(stored))
    await relay.stopped()

    published = await outbox.read_topic(len(stored))

    assert positions_of(published) == list(range(1, len(stored) + 1))
    by_position = {e.position: e for e in stored}
    partitions_of_stream: defaultdict[str, set[int]] = defaultdict(set)
    for message in published:
        envelope = message.envelope
        event = by_position[envelope.position]
        assert message.key == event.stream_id.encode()
        assert envelope.event_id == str(event.event_id)
        assert envelope.event_type == "test.Happened"
        assert envelope.aggregate_type == "thing"
        assert envelope.aggregate_id == event.stream_id
        assert envelope.aggregate_version == event.version
        assert envelope.merchant_id == f"merchant-of-{event.stream_id}"
        assert envelope.producer == outbox.settings.service_name
        assert envelope.payload == f"{event.stream_id}/{event.version}".encode()
        assert envelope.occurred_at.ToDatetime().timestamp() == pytest.approx(
            event.occurred_at.timestamp(), abs=1e-6
        )
        assert envelope.correlation_id == event.correlation_id
        assert envelope.causation_id == event.causation_id
        partitions_of_stream[event.stream_id].add(message.partition)
    assert all(len(partitions) == 1 for partitions in partitions_of_stream.values())
    caused = [p.envelope for p in published if p.envelope.position <= 36]
    assert {(e.correlation_id, e.causation_id) for e in caused} == {("corr-relay", "cause-relay")}
    for stream in streams:
        in_log_order = sorted(
            (p for p in published if p.envelope.aggregate_id == stream), key=lambda p: p.offset
        )
        versions = [p.envelope.aggregate_version for p in in_log_order]
        assert versions == list(range(1, len(versions) + 1))
    assert len({p.partition for p in published}) > 1  # keys spread over the partitions


async def test_a_relay_never_skips_an_event_whose_transaction_commits_later(
    outbox: Outbox,
) -> None:
    stream, other = unique("slow"), unique("fast")
    await outbox.append(other, 0, 1)
    relay = RunningRelay(outbox.relay())
    await caught_up(outbox, relay.relay, 1)

    async with outbox.database.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await outbox.store.append(
            [
                StreamAppend(
                    stream_id=stream,
                    aggregate_type="thing",
                    merchant_id="m",
                    expected_version=0,
                    events=[NewEvent(event_type="test.Happened", payload=b"late")],
                )
            ],
            conn=conn,
        )
        await asyncio.sleep(0.3)  # several relay polls while position 2 is uncommitted
        recorded_while_open = await outbox.recorded(relay.relay)
        await transaction.commit()
    await caught_up(outbox, relay.relay, 2)
    await relay.stopped()

    assert recorded_while_open == 1
    assert positions_of(await outbox.read_topic(2)) == [1, 2]


async def test_a_restarted_relay_continues_from_the_recorded_position(outbox: Outbox) -> None:
    stream = unique("stream")
    await outbox.append(stream, 0, 5)

    # A relay that publishes one batch and dies (its connection closes).
    conn = await outbox.connect()
    first = outbox.relay(batch_size=3)
    assert await first.publish_once(conn) == 3
    await conn.close()
    assert await outbox.recorded(first) == 3

    # A relay that catches up, then is killed while idle.
    second = RunningRelay(outbox.relay(batch_size=3))
    await caught_up(outbox, second.relay, 5)
    await second.killed()
    await outbox.append(stream, 5, 4)
    await asyncio.sleep(0.2)
    assert await outbox.recorded(second.relay) == 5  # nothing publishes while no relay runs

    third = RunningRelay(outbox.relay(batch_size=3))
    await caught_up(outbox, third.relay, 9)
    await third.stopped()

    published = await outbox.read_topic(9)
    assert positions_of(published) == list(range(1, 10))
    ordered = sorted(published, key=lambda p: p.offset)  # one stream: one partition
    assert [p.envelope.aggregate_version for p in ordered] == list(range(1, 10))


@pytest.mark.parametrize("lost_record", ["rewound", "deleted"])
async def test_a_position_lost_after_publishing_republishes_those_events_and_loses_none(
    outbox: Outbox, lost_record: str
) -> None:
    streams = [unique("stream"), unique("stream")]
    for stream in streams:
        await outbox.append(stream, 0, 3)
    conn = await outbox.connect()
    crashed = outbox.relay(batch_size=4)
    assert await crashed.publish_once(conn) == 4
    assert await crashed.publish_once(conn) == 2
    await conn.close()
    # The crash: the second batch was acknowledged by the broker but its record was lost.
    if lost_record == "rewound":
        await outbox.database.pool.execute("UPDATE relay_positions SET position = 4")
        replayed_from = 4
    else:
        await outbox.database.pool.execute("DELETE FROM relay_positions")
        replayed_from = 0

    restarted = RunningRelay(outbox.relay(batch_size=4))
    await caught_up(outbox, restarted.relay, 6)
    await outbox.append(streams[0], 3, 1)
    await caught_up(outbox, restarted.relay, 7)
    await restarted.stopped()

    expected_copies = Counter({p: (2 if replayed_from < p <= 6 else 1) for p in range(1, 8)})
    published = await outbox.read_topic(sum(expected_copies.values()))
    assert Counter(p.envelope.position for p in published) == expected_copies
    ids_by_position: defaultdict[int, set[str]] = defaultdict(set)
    for message in published:
        ids_by_position[message.envelope.position].add(message.envelope.event_id)
    assert all(len(ids) == 1 for ids in ids_by_position.values())  # duplicates, same id
    for stream in streams:
        log = sorted(
            (p for p in published if p.envelope.aggregate_id == stream), key=lambda p: p.offset
        )
        versions = [p.envelope.aggregate_version for p in log]
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == sorted(first_seen)  # a replay repeats, never reorders, a stream


async def test_only_one_relay_of_a_name_publishes_and_a_standby_takes_over_when_it_stops(
    outbox: Outbox,
) -> None:
    stream = unique("stream")
    await outbox.append(stream, 0, 3)
    active_publisher = RecordingPublisher(outbox.producer)
    standby_publisher = RecordingPublisher(outbox.producer)
    active = RunningRelay(outbox.relay(active_publisher))
    await caught_up(outbox, active.relay, 3)
    standby = RunningRelay(outbox.relay(standby_publisher))
    await asyncio.sleep(0.3)  # the standby tries the lock several times meanwhile
    await outbox.append(stream, 3, 2)
    await caught_up(outbox, active.relay, 5)
    await asyncio.sleep(0.2)

    assert standby_publisher.positions == []
    assert not standby.task.done()

    await active.stopped()
    await outbox.append(stream, 5, 2)
    await caught_up(outbox, standby.relay, 7)
    await standby.stopped()

    assert active_publisher.positions == [1, 2, 3, 4, 5]
    assert standby_publisher.positions == [6, 7]
    assert positions_of(await outbox.read_topic(7)) == list(range(1, 8))


async def test_an_append_wakes_an_idle_relay_without_waiting_for_its_poll(outbox: Outbox) -> None:
    relay = OutboxRelay(
        dsn=outbox.database.dsn,
        store=outbox.store,
        publisher=KafkaPublisher(outbox.producer),
        service=outbox.settings.service_name,
        topic=outbox.topic,
        poll_interval=60.0,  # only the append's notification can wake it within the test
        search_path=outbox.database.schema,
    )
    running = RunningRelay(relay)
    await asyncio.sleep(0.3)  # started, found nothing, now asleep
    await outbox.append(unique("stream"), 0, 2)
    started = time.monotonic()
    await caught_up(outbox, relay, 2)
    woken_after = time.monotonic() - started
    await running.stopped()

    assert woken_after < 5
    assert positions_of(await outbox.read_topic(2)) == [1, 2]
