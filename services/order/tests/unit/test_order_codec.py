"""Order events on the wire: every event survives the round trip, and the integration
events carry what consumers need (inventory releases only holds refunded in full)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from livecommerce.order.v1 import events_pb2 as pb
from services.kit.eventstore import StoredEvent
from services.order.adapters import codec
from services.order.domain.order import (
    Order,
    OrderEvent,
    OrderStatus,
    PaymentStarted,
    ReturnKind,
)
from services.order.tests.unit.test_order_state_machine import NOW, _apply, paid_order


def _stored(event: OrderEvent, order: Order) -> StoredEvent:
    new = codec.encode(event, order)
    return StoredEvent(
        position=1,
        stream_id="s",
        version=1,
        event_id=uuid4(),
        event_type=new.event_type,
        aggregate_type="order",
        merchant_id="m1",
        occurred_at=datetime.now(UTC),
        correlation_id="",
        causation_id="",
        trace_context={},
        payload=new.payload,
    )


def _events_of_a_long_life() -> list[tuple[OrderEvent, Order]]:
    """Each event of an order placed, paid, shipped, delivered, returned in part and
    completed, with the order as it was before the event."""
    order = Order("m1", "o1")
    pairs: list[tuple[OrderEvent, Order]] = []
    steps: list[Callable[[Order], list[OrderEvent]]] = [
        lambda o: o.place(paid_order().details),
        lambda o: o.start_payment(PaymentStarted("o1", "p1", "sandbox", 1501, "CNY", "u"), NOW),
        lambda o: o.record_payment("p1", "sandbox", "t1", 1501, "CNY", NOW),
        lambda o: o.ship("SF", "SF123", NOW),
        lambda o: o.deliver(NOW, timedelta(days=7)),
        lambda o: o.request_return("x1", ReturnKind.RETURN, [("sku-a", 1)], "torn"),
        lambda o: o.approve_return("x1"),
        lambda o: o.receive_return("x1"),
        lambda o: o.record_refund("x1", "pr1"),
        lambda o: o.complete(),
    ]
    for step in steps:
        for event in step(order):
            pairs.append((event, order))
            order = order.apply(event)
    assert order.status is OrderStatus.COMPLETED
    return pairs


def test_every_event_of_an_orders_life_survives_the_wire() -> None:
    for event, before in _events_of_a_long_life():
        assert codec.decode(_stored(event, before)) == event


def test_a_partial_refund_names_no_hold_and_the_last_unit_names_its_lines_hold() -> None:
    order = paid_order()
    order = _apply(order, order.request_refund("r1", [("sku-a", 1)], ""))
    first = order.record_refund("r1", "p1")
    message = codec.to_proto(first[0], order)
    assert isinstance(message, pb.OrderRefunded)
    assert list(message.hold_ids) == []
    order = _apply(order, first)
    order = _apply(order, order.request_refund("r2", [("sku-a", 2)], ""))
    second = order.record_refund("r2", "p2")
    message = codec.to_proto(second[0], order)
    assert isinstance(message, pb.OrderRefunded)
    assert list(message.hold_ids) == ["hold-sku-a"]
    assert message.before_shipping
