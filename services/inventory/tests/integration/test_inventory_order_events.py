"""The worker's order.events consumer against the real broker, Postgres and Redis: order
events published as the order service's relay publishes them release the orders' holds, and
the sale's counts, events and Redis agree afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

import pytest_asyncio
from aiokafka import AIOKafkaProducer, TopicPartition
from google.protobuf.message import Message

from livecommerce.kit.v1.envelope_pb2 import Envelope
from livecommerce.order.v1 import events_pb2 as order_events
from services.inventory.entrypoints.consumers import order_event_handlers
from services.inventory.settings import InventorySettings
from services.inventory.tests.conftest import Clock, InventoryFactory
from services.inventory.tests.flash_helpers import Stage, audit, stage_sale, tally
from services.kit.consumer import ConsumerRunner
from services.kit.eventstore import StoredEvent
from services.kit.kafka import ensure_topics, new_consumer, new_producer
from services.kit.testing import eventually, unique

DEADLINE_SECONDS = 30.0


@dataclass
class OrderTopic:
    """A topic of its own standing for order.events, a producer publishing to it as the
    order service's relay does, and the inventory worker's consumer of it, running."""

    settings: InventorySettings
    producer: AIOKafkaProducer
    runner: ConsumerRunner
    stage: Stage
    versions: dict[str, int] = field(default_factory=dict)

    async def publish(self, message: Message, order_id: str) -> Envelope:
        stream_id = f"order:{self.stage.merchant}:{order_id}"
        self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        envelope = StoredEvent(
            position=0,
            stream_id=stream_id,
            version=self.versions[stream_id],
            event_id=uuid4(),
            event_type=message.DESCRIPTOR.full_name,
            aggregate_type="order",
            merchant_id=self.stage.merchant,
            occurred_at=datetime.now(UTC),
            correlation_id="",
            causation_id="",
            trace_context={},
            payload=message.SerializeToString(),
        ).to_envelope("order")
        await self.send(envelope)
        return envelope

    async def send(self, envelope: Envelope) -> None:
        await self.producer.send_and_wait(
            self.settings.order_events_topic,
            value=envelope.SerializeToString(),
            key=envelope.aggregate_id.encode(),
        )

    async def handled(self, *envelopes: Envelope) -> None:
        """Wait until the consumer has applied each of these events (its inbox has them)."""
        ids = [e.event_id for e in envelopes]

        async def all_in_inbox() -> bool:
            found: int = await self.stage.parts.pool.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id::text = ANY($2)",
                self.runner.name,
                ids,
            )
            return found == len(ids)

        await eventually(all_in_inbox, "the order events are handled", within=DEADLINE_SECONDS)


@pytest_asyncio.fixture
async def orders(
    make_inventory: InventoryFactory, inventory_settings: InventorySettings
) -> AsyncIterator[OrderTopic]:
    clock = Clock()
    settings = inventory_settings.model_copy(
        update={"order_events_topic": unique("order.events"), "kafka_partitions": 3}
    )
    name = unique("inventory-orders")
    await ensure_topics(settings, [settings.order_events_topic, f"{name}.dlq"])
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=10, per_user_limit=5)
        producer = new_producer(settings)
        await producer.start()
        # A manual assignment: no group join to wait for, yet offsets commit to the group.
        consumer = new_consumer(settings, name, [])
        await consumer.start()
        consumer.assign(
            [TopicPartition(settings.order_events_topic, p) for p in range(3)],
        )
        runner = ConsumerRunner(
            name=name,
            consumer=consumer,
            dead_letters=producer,
            pool=parts.pool,
            handlers=order_event_handlers(parts.flash_sales),
        )
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run(stop))
        try:
            yield OrderTopic(settings, producer, runner, stage)
        finally:
            stop.set()
            await asyncio.wait_for(running, DEADLINE_SECONDS)
            await consumer.stop()
            await producer.stop()


def cancelled(order_id: str, reason: str, *hold_ids: str) -> order_events.OrderCancelled:
    return order_events.OrderCancelled(
        order_id=order_id, buyer_id="buyer", reason=reason, hold_ids=list(hold_ids)
    )


def refunded(order_id: str, before_shipping: bool, *hold_ids: str) -> order_events.OrderRefunded:
    return order_events.OrderRefunded(
        order_id=order_id,
        refund_id=unique("refund"),
        full=True,
        before_shipping=before_shipping,
        hold_ids=list(hold_ids),
    )


async def test_cancelled_and_refunded_orders_give_their_units_back_to_the_sale(
    orders: OrderTopic,
) -> None:
    stage = orders.stage
    await stage.reserve("buyer-a", 2, "order-a")
    await stage.reserve("buyer-b", 3, "order-b")
    await stage.reserve("buyer-c", 1, "order-c")
    await stage.reserve("buyer-d", 1, "order-d")
    await stage.reserve("buyer-e", 1, "order-e")
    await stage.flash_sales.confirm(stage.merchant, "order-b")
    await stage.flash_sales.confirm(stage.merchant, "order-d")
    before = await audit(stage)

    sent = [
        await orders.publish(cancelled("order-a", "timeout", "order-a"), "order-a"),
        await orders.publish(cancelled("order-c", "buyer", "order-c"), "order-c"),
        await orders.publish(refunded("order-b", True, "order-b"), "order-b"),
        await orders.publish(refunded("order-d", False, "order-d"), "order-d"),
    ]
    paid = await orders.publish(
        order_events.OrderPaid(order_id="order-e", hold_ids=["order-e"]), "order-e"
    )
    await orders.handled(*sent)
    after = await audit(stage)

    assert (before.available, before.held, before.sold) == (2, 4, 4)
    assert (after.available, after.held, after.sold, after.returned) == (8, 1, 1, 0)
    assert (await tally(stage)).reasons == {"expired": 1, "cancelled": 1, "refunded": 1}
    assert paid.event_id  # OrderPaid has no handler here: the hold stays held
    assert (await stage.parts.ledger.hold(stage.merchant, "order-e")).state.value == "held"
    again = await stage.reserve("buyer-b", 5)  # the refunded buyer's quota came back too
    assert again.reserved


async def test_unknown_and_malformed_hold_ids_are_skipped_without_stopping_the_consumer(
    orders: OrderTopic,
) -> None:
    stage = orders.stage
    await stage.reserve("buyer-a", 2, "order-a")
    await stage.reserve("buyer-b", 1, "order-b")

    ghost = await orders.publish(cancelled("ghost", "buyer", "ghost"), "order-a")
    mixed = await orders.publish(
        cancelled("order-a", "merchant", "no-such-hold", "", "bad id", "x" * 65, "order-a"),
        "order-a",
    )
    later = await orders.publish(cancelled("order-b", "group_failed", "order-b"), "order-b")
    await orders.handled(ghost, mixed, later)
    status = await audit(stage)

    assert (status.available, status.held) == (10, 0)
    assert (await tally(stage)).reasons == {"cancelled": 2}


async def test_a_redelivered_or_repeated_order_event_releases_nothing_twice(
    orders: OrderTopic,
) -> None:
    stage = orders.stage
    await stage.reserve("buyer-a", 2, "order-a")
    await stage.reserve("buyer-b", 3, "order-b")

    first = await orders.publish(cancelled("order-a", "buyer", "order-a", "order-a"), "order-a")
    await orders.send(first)  # the broker delivers the same event again
    repeated = await orders.publish(cancelled("order-a", "timeout", "order-a"), "order-a")
    await orders.handled(first, repeated)
    status = await audit(stage)

    assert (status.available, status.held) == (7, 3)
    assert (await tally(stage)).reasons == {"cancelled": 1}


async def test_a_refund_after_the_sale_ended_returns_the_units_to_the_sku(
    orders: OrderTopic,
) -> None:
    stage = orders.stage
    await stage.reserve("buyer-a", 2, "order-a")
    await stage.flash_sales.confirm(stage.merchant, "order-a")
    await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)
    on_hand = await stage.on_hand()

    sent = await orders.publish(refunded("order-a", True, "order-a"), "order-a")
    await orders.handled(sent)
    status = await audit(stage)

    assert (status.available, status.held, status.sold, status.returned) == (0, 0, 0, 10)
    assert await stage.on_hand() == on_hand + 2
