"""A worker's event plumbing against real Postgres and the real broker: the topics it
needs exist, an appended event is relayed to the service's topic, each subscription's
handlers get the events of its topics, and what they cannot take goes to ``<group>.dlq``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ConsumerStoppedError, KafkaError

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit.consumer import ConsumedEvent
from services.kit.db import Connection, create_pool, migrate
from services.kit.event_worker import Subscription, event_plumbing
from services.kit.eventstore import NewEvent, PostgresEventStore, StoredEvent, StreamAppend
from services.kit.kafka import connection_options, new_producer
from services.kit.runtime import run_all
from services.kit.settings import Environment, ServiceSettings
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints, eventually, unique
from services.kit.tests.integration.test_kit_consumer_runner import (
    DEADLINE_SECONDS,
    NOTED,
    envelope,
    read_all_of,
)


async def note(event: ConsumedEvent, conn: Connection) -> None:
    """Writes the event's id and topic in the runner's transaction."""
    await conn.execute(
        "INSERT INTO noted (event_id, topic) VALUES ($1, $2)", event.event_id, event.topic
    )


@dataclass(frozen=True)
class Service:
    """A throw-away service on a database of its own: the relay connects with the settings'
    DSN, as in production, so its tables must be on that database's default search path."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    store: PostgresEventStore

    async def append_one(self) -> StoredEvent:
        stored = await self.store.append(
            [
                StreamAppend(
                    stream_id=unique("thing"),
                    aggregate_type="thing",
                    merchant_id="m1",
                    expected_version=0,
                    events=[NewEvent(event_type="test.Happened", payload=b"relayed")],
                )
            ]
        )
        return stored[0]

    async def topics(self) -> set[str]:
        admin = AIOKafkaAdminClient(**connection_options(self.settings))
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()


@pytest_asyncio.fixture
async def service(stack: StackEndpoints) -> AsyncIterator[Service]:
    async with scratch_database(stack, "kit_worker") as dsn:
        pool = await create_pool(dsn, max_size=5)
        try:
            await migrate(pool, [])
            await pool.execute(
                "CREATE TABLE noted (event_id uuid PRIMARY KEY, topic text NOT NULL)"
            )
            settings = ServiceSettings(
                service_name=unique("svc"),
                environment=Environment.TEST,
                postgres_dsn=dsn,
                kafka_bootstrap=stack.kafka_bootstrap,
                kafka_profile=stack.kafka_profile,
                kafka_partitions=3,
            )
            yield Service(settings, pool, PostgresEventStore(pool, settings.service_name))
        finally:
            await pool.close()


async def test_the_plumbing_relays_appended_events_and_feeds_each_subscription_its_topics(
    service: Service,
) -> None:
    settings = service.settings
    upstream = [f"{unique('upstream')}.events", f"{unique('upstream')}.events"]
    group = unique("group")
    notes = Subscription(group, upstream, {NOTED: note}, loop="notes")
    sent = [envelope("first"), envelope("second")]
    undecodable = b"\xff\xff\xff not an envelope"
    stop = asyncio.Event()

    async with event_plumbing(
        settings, pool=service.pool, store=service.store, subscriptions=[notes]
    ) as plumbing:
        topics = await service.topics()
        running = asyncio.create_task(run_all(stop, plumbing.loops(stop)))
        stored = await service.append_one()
        producer = new_producer(settings)
        await producer.start()
        try:
            for topic, event in zip(upstream, sent, strict=True):
                await producer.send_and_wait(topic, value=event.SerializeToString())
            await producer.send_and_wait(upstream[0], value=undecodable)
        finally:
            await producer.stop()

        async def both_noted() -> bool:
            count: int = await service.pool.fetchval("SELECT count(*) FROM noted")
            return count == len(sent)

        await eventually(both_noted, "the subscription's handler noted both events")
        relayed = await read_all_of(settings, settings.events_topic, 1)
        dead = await read_all_of(settings, f"{group}.dlq", 1)
        stop.set()
        await asyncio.wait_for(running, DEADLINE_SECONDS)

    assert {settings.events_topic, *upstream, f"{group}.dlq"} <= topics
    assert list(plumbing.runners) == ["notes"]
    assert plumbing.runners["notes"].name == group
    assert [Envelope.FromString(r.value).event_id for r in relayed] == [str(stored.event_id)]
    assert Envelope.FromString(relayed[0].value).producer == settings.service_name
    relay = f"{settings.service_name}->{settings.events_topic}"
    assert (
        await service.pool.fetchval("SELECT position FROM relay_positions WHERE relay = $1", relay)
        == stored.position
    )
    noted = await service.pool.fetch("SELECT event_id, topic FROM noted")
    assert {(r["event_id"], r["topic"]) for r in noted} == {
        (UUID(event.event_id), topic) for topic, event in zip(upstream, sent, strict=True)
    }
    inbox = await service.pool.fetch("SELECT consumer FROM inbox")
    assert [r["consumer"] for r in inbox] == [group, group]
    assert [r.value for r in dead] == [undecodable]


async def test_a_worker_that_fails_inside_the_plumbing_fails_with_its_clients_stopped(
    service: Service,
) -> None:
    notes = Subscription(unique("group"), [f"{unique('upstream')}.events"], {}, loop="notes")
    failure = RuntimeError("a loop of the worker broke")

    with pytest.raises(RuntimeError) as raised:
        async with event_plumbing(
            service.settings, pool=service.pool, store=service.store, subscriptions=[notes]
        ) as plumbing:
            raise failure

    assert raised.value is failure
    with pytest.raises(ConsumerStoppedError):
        await plumbing.runners["notes"].run(asyncio.Event())
    await service.append_one()
    conn = await asyncpg.connect(service.settings.postgres_dsn)
    try:
        with pytest.raises(KafkaError):  # the producer is closed: nothing can be published
            await plumbing.relay.publish_once(conn)
    finally:
        await conn.close()
