"""The Kafka side of a service's worker, written once: the outbox relay to the service's
events topic and one consumer runner per consumer group the worker subscribes with.

``event_plumbing`` makes sure every topic the worker touches exists (its events topic, the
topics it reads, each group's dead-letter topic ``<group>.dlq``), starts one producer (the
relay's publisher and every runner's dead-letter sink) and one consumer per group, and
stops them all on exit, the consumers first (in reverse order of starting) and the producer
last, whether the worker stopped or failed. The worker runs the loops it is given next to
its own (timers, sweepers) under :func:`services.kit.runtime.run_all`::

    projection = Subscription("inventory-stock-levels", [topic], handlers, loop="stock-levels")
    async with event_plumbing(settings, pool=pool, store=store, subscriptions=[projection]) as p:
        await run_all(stop, {**p.loops(stop), "sweeper": run_periodically(...)})
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import asyncpg

from services.kit.consumer import ConsumerRunner, Handler
from services.kit.eventstore import PostgresEventStore
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.outbox import KafkaPublisher, OutboxRelay
from services.kit.settings import ServiceSettings

RELAY_LOOP = "relay"
"""The relay's name among the worker's loops (``run_all`` logs a failed loop by name)."""


@dataclass(frozen=True)
class Subscription:
    """One consumer group of a worker.

    ``group`` is the Kafka group id, the inbox's consumer name and the stem of the
    dead-letter topic: renaming it makes a new group that reads its topics from the start.
    ``loop`` names the runner among the worker's loops, as logs and alerts know it.
    """

    group: str
    topics: Sequence[str]
    handlers: Mapping[str, Handler]
    loop: str

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.group}.dlq"


def topics_of(events_topic: str, subscriptions: Sequence[Subscription]) -> list[str]:
    """Every topic a worker needs, each once, in a stable order: the events topic, then each
    subscription's topics and its dead-letter topic.

    A worker may read its own events topic (a projection), and two groups may read the same
    topic: the list has no repeats, since a topic asked twice in one creation is an error.
    Refuses subscriptions that share a group or a loop name, or take the relay's loop name:
    one would silently replace the other among the worker's loops.
    """
    groups = [s.group for s in subscriptions]
    loops = [RELAY_LOOP, *(s.loop for s in subscriptions)]
    if len(set(groups)) != len(groups):
        raise ValueError(f"two subscriptions share a consumer group: {groups}")
    if len(set(loops)) != len(loops):
        raise ValueError(f"two of the worker's loops share a name: {loops}")
    topics = [events_topic]
    for subscription in subscriptions:
        topics += [*subscription.topics, subscription.dead_letter_topic]
    return list(dict.fromkeys(topics))


@dataclass(frozen=True)
class EventPlumbing:
    """The started relay and runners of a worker; their clients live as long as the
    ``event_plumbing`` block that gave them."""

    relay: OutboxRelay
    runners: Mapping[str, ConsumerRunner]
    """By loop name, in the order of the subscriptions."""

    def loops(self, stop: asyncio.Event) -> dict[str, Awaitable[None]]:
        """The relay's and each runner's loop by name, to run (once) until ``stop``."""
        return {
            RELAY_LOOP: self.relay.run(stop),
            **{name: runner.run(stop) for name, runner in self.runners.items()},
        }


@asynccontextmanager
async def event_plumbing(
    settings: ServiceSettings,
    *,
    pool: asyncpg.Pool,
    store: PostgresEventStore,
    subscriptions: Sequence[Subscription],
) -> AsyncIterator[EventPlumbing]:
    """Ensure the worker's topics, start its producer and consumers, and yield the relay
    (from ``store`` to the service's ``settings.events_topic``) and a runner per
    subscription (its inbox and its handlers' writes in ``pool``).

    The relay connects with ``settings.postgres_dsn`` on its own connection: it holds the
    relay lock and listens for appends there, outside the pool.
    """
    topic = settings.events_topic
    await ensure_topics(settings, topics_of(topic, subscriptions))
    producer = new_producer(settings)
    async with AsyncExitStack() as started:
        await producer.start()
        started.push_async_callback(producer.stop)
        runners: dict[str, ConsumerRunner] = {}
        for subscription in subscriptions:
            consumer = new_consumer(settings, subscription.group, subscription.topics)
            await consumer.start()
            started.push_async_callback(consumer.stop)
            runners[subscription.loop] = ConsumerRunner(
                name=subscription.group,
                consumer=consumer,
                dead_letters=producer,
                pool=pool,
                handlers=subscription.handlers,
            )
        relay = OutboxRelay(
            dsn=settings.postgres_dsn,
            store=store,
            publisher=KafkaPublisher(producer),
            service=settings.service_name,
            topic=topic,
        )
        yield EventPlumbing(relay, runners)
