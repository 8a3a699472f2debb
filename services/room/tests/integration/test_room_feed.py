"""Other services' events reach the room's viewers: promotion's campaigns and coupon drops,
and inventory's holds as "stock left", applied once through the consumer's inbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest_asyncio
from google.protobuf.message import Message
from redis.asyncio.client import PubSub

from livecommerce.inventory.v1 import events_pb2 as inventory_events
from livecommerce.promotion.v1 import events_pb2 as promotion_events
from services.kit.consumer import ConsumedEvent, ConsumerRunner
from services.kit.scaffolding import envelope_of
from services.kit.testing import unique
from services.kit.wire import timestamp
from services.room.entrypoints.consumers import FEED_CONSUMER, feed_handlers
from services.room.tests.conftest import Harness


def consumed(merchant: str, message: Message) -> ConsumedEvent:
    """``message`` as another service's relay publishes it (the stream does not matter)."""
    envelope = envelope_of(
        message,
        stream_id=f"other:{merchant}:{uuid4().hex}",
        version=1,
        aggregate_type="other",
        merchant_id=merchant,
        producer="other",
    )
    return ConsumedEvent(envelope, "topic", 0, 0)


@pytest_asyncio.fixture
async def runner(harness: Harness) -> ConsumerRunner:
    return ConsumerRunner(
        name=FEED_CONSUMER,
        consumer=None,  # events are applied directly, not read from Kafka
        dead_letters=None,
        pool=harness.service.pool,
        handlers=feed_handlers(harness.service.feed),
    )


@pytest_asyncio.fixture
async def room_channel(harness: Harness) -> AsyncIterator[tuple[str, str, PubSub]]:
    merchant, room_id = unique("m"), unique("room")
    pubsub = harness.service.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{harness.service.settings.push_channel_prefix}:{merchant}:{room_id}")
    try:
        yield merchant, room_id, pubsub
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def received(pubsub: PubSub, within: float = 0.5) -> list[dict[str, Any]]:
    """Every message published on the channel until none came for ``within`` seconds."""
    messages: list[dict[str, Any]] = []
    quiet_reads = 0
    while quiet_reads < 2:  # the first empty read may be the subscription's confirmation
        message = await pubsub.get_message(timeout=within / 2)
        if message is None:
            quiet_reads += 1
        else:
            quiet_reads = 0
            messages.append(json.loads(message["data"]))
    return messages


async def apply(runner: ConsumerRunner, event: ConsumedEvent) -> str:
    return await runner.apply(runner._handlers[event.event_type], event)


async def test_a_room_campaigns_life_and_its_stock_left_reach_the_room(
    harness: Harness, runner: ConsumerRunner, room_channel: tuple[str, str, PubSub]
) -> None:
    merchant, room_id, pubsub = room_channel
    now = harness.clock()
    scheduled = consumed(
        merchant,
        promotion_events.CampaignScheduled(
            campaign_id="c1",
            sku_id="LIP",
            room_id=room_id,
            quantity=100,
            starts_at=timestamp(now + timedelta(minutes=5)),
            ends_at=timestamp(now + timedelta(minutes=15)),
        ),
    )
    assert await apply(runner, scheduled) == "applied"
    assert await apply(runner, scheduled) == "duplicate"
    for quantity in (30, 20):
        await apply(
            runner,
            consumed(merchant, inventory_events.StockReserved(sale_id="c1", quantity=quantity)),
        )
    await apply(
        runner,
        consumed(merchant, inventory_events.ReservationReleased(sale_id="c1", quantity=5)),
    )
    await apply(runner, consumed(merchant, inventory_events.SaleSoldOut(sale_id="c1")))
    messages = await received(pubsub)
    assert [m["type"] for m in messages] == [
        "campaign_scheduled",
        "stock",
        "stock",
        "stock",
        "stock",
    ]
    assert 290 <= messages[0]["data"]["countdown_seconds"] <= 300
    assert [m["data"]["left"] for m in messages[1:]] == [70, 50, 55, 0]


async def test_coupon_drops_of_a_room_are_announced_and_other_rooms_hear_nothing(
    harness: Harness, runner: ConsumerRunner, room_channel: tuple[str, str, PubSub]
) -> None:
    merchant, room_id, pubsub = room_channel
    ends = harness.clock() + timedelta(minutes=2)
    for target in ("", unique("elsewhere"), room_id):
        await apply(
            runner,
            consumed(
                merchant,
                promotion_events.CouponTemplateCreated(
                    template_id=f"t-{target}",
                    kind="fixed_amount",
                    room_id=target,
                    claim_ends_at=timestamp(ends),
                ),
            ),
        )
    await apply(
        runner,
        consumed(merchant, inventory_events.StockReserved(sale_id="not-a-room-sale", quantity=1)),
    )
    [drop] = await received(pubsub)
    assert drop["type"] == "coupon_drop"
    assert drop["data"]["template_id"] == f"t-{room_id}"
