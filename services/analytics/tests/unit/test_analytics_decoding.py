"""Envelopes of the five topics become facts; what analytics does not count becomes None."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message

from livecommerce.inventory.v1 import events_pb2 as inventory
from livecommerce.order.v1 import events_pb2 as order
from livecommerce.promotion.v1 import events_pb2 as promotion
from livecommerce.referral.v1 import events_pb2 as referral
from livecommerce.room.v1 import events_pb2 as room
from services.analytics.adapters.decoding import DECODERS, decode
from services.analytics.domain import facts as f
from services.kit.scaffolding import envelope_of
from services.kit.wire import timestamp

OCCURRED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STATED = OCCURRED + timedelta(seconds=7)


def fact_of(message: Message, version: int = 1) -> f.Fact | None:
    envelope = envelope_of(
        message,
        stream_id="x:m1:y",
        version=version,
        aggregate_type="x",
        merchant_id="m1",
        producer="x",
        occurred_at=OCCURRED,
    )
    return decode(envelope)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            room.ViewerJoined(
                room_id="r",
                viewer_id="v",
                channel="h5",
                entry="share_link",
                share_code="c",
                visit_id="vis",
                joined_at=timestamp(STATED),
            ),
            f.ViewerJoined("m1", "r", "vis", "v", "h5", "share_link", "c", STATED),
            id="a join at the time it states",
        ),
        pytest.param(
            room.ViewerJoined(room_id="r", viewer_id="v", channel="app"),
            f.ViewerJoined("m1", "r", "x:m1:y", "v", "app", "", "", OCCURRED),
            id="a join without time or visit id: the envelope's",
        ),
        pytest.param(
            order.OrderPlaced(
                order_id="o",
                buyer_id="b",
                room_id="r",
                channel="app",
                lines=[order.OrderLine(sku_id="S", quantity=2, total_minor=300)],
                total_minor=300,
            ),
            f.OrderPlaced("m1", "o", "b", "r", "app", "", (f.Line("S", 2, 300),), 300, OCCURRED),
            id="an order with its lines",
        ),
        pytest.param(
            order.OrderRefunded(
                order_id="o",
                refund_id="rf",
                amount_minor=100,
                lines=[order.RefundLine(sku_id="S", quantity=1, amount_minor=100)],
            ),
            f.OrderRefunded("m1", "o", "rf", 100, (f.Line("S", 1, 100),), OCCURRED),
            id="a refund with its lines",
        ),
        pytest.param(
            promotion.CouponTemplateCreated(
                template_id="t", room_id="r", quota=5, claim_starts_at=timestamp(STATED)
            ),
            f.CouponDropped("m1", "t", "r", 5, STATED),
            id="a coupon drop in a room",
        ),
        pytest.param(
            promotion.CouponTemplateCreated(template_id="t", quota=5),
            None,
            id="a coupon template of no room is no drop",
        ),
        pytest.param(
            inventory.StockReceived(sku_id="S", quantity=5, on_hand_after=12),
            f.StockLevel("m1", "S", 12, 1, OCCURRED),
            id="stock after a receipt, with its stream version",
        ),
        pytest.param(
            inventory.StockReserved(hold_id="h", sku_id="S", quantity=1),
            None,
            id="a hold outside a flash sale",
        ),
        pytest.param(
            referral.ProgrammeConfigured(version=3, sku_categories={"S": "lipstick"}),
            f.CategoriesConfigured("m1", 3, OCCURRED, {"S": "lipstick"}),
            id="categories from the programme",
        ),
        pytest.param(order.OrderShipped(order_id="o"), None, id="an event not counted"),
    ],
)
def test_envelopes_decode_to_the_facts_they_state(
    message: Message, expected: f.Fact | None
) -> None:
    assert fact_of(message) == expected


def test_every_decoded_event_type_is_a_message_of_the_contracts() -> None:
    packages = {
        "livecommerce.room.v1",
        "livecommerce.order.v1",
        "livecommerce.promotion.v1",
        "livecommerce.inventory.v1",
        "livecommerce.referral.v1",
    }
    assert {name.rsplit(".", 1)[0] for name in DECODERS} == packages
    assert len(DECODERS) == 29


def test_a_room_subscription_is_a_new_subscriber_and_a_hosts_is_not_counted_in_a_room() -> None:
    def subscribed(target: str, target_id: str) -> room.ReminderSubscribed:
        return room.ReminderSubscribed(
            target=target, target_id=target_id, viewer_id="fan-1", subscribed_at=timestamp(STATED)
        )

    assert fact_of(subscribed("room", "room-1")) == f.ReminderSubscribed(
        "m1", "room-1", "fan-1", STATED
    )
    assert fact_of(subscribed("host", "host-1")) is None
