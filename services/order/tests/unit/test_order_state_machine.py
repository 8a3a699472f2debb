"""The order aggregate: every legal step, every illegal one refused, refund money exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kit.errors import NotFoundError
from services.order.domain.order import (
    CancelReason,
    IllegalTransitionError,
    InvalidRefundError,
    Order,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    PaymentMismatchError,
    PaymentStarted,
    ReturnKind,
    ReturnState,
    Totals,
    share_of,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(minutes=14)


def _line(sku: str, quantity: int, total: int) -> OrderLine:
    return OrderLine(
        sku, quantity, f"sale-{sku}", f"hold-{sku}", total, total // quantity, 0, 0, total
    )


def placed_order(lines: tuple[OrderLine, ...] | None = None) -> Order:
    lines = lines or (_line("sku-a", 3, 1000), _line("sku-b", 1, 501))
    total = sum(x.total for x in lines)
    placed = OrderPlaced(
        order_id="o1",
        buyer_id="buyer-1",
        room_id="room-1",
        channel="app",
        currency="CNY",
        lines=lines,
        coupon_ids=("c1",),
        group_id="",
        share_code="",
        totals=Totals(total, 0, 0, 0, 0, total),
        payment_deadline=DEADLINE,
    )
    order = Order("m1", "o1")
    return _apply(order, order.place(placed))


def _apply(order: Order, events: list) -> Order:  # type: ignore[type-arg]
    for event in events:
        order = order.apply(event)
    return order


def paid_order() -> Order:
    order = placed_order()
    order = _apply(
        order, order.start_payment(PaymentStarted("o1", "p1", "sandbox", 1501, "CNY", "u"), NOW)
    )
    return _apply(order, order.record_payment("p1", "sandbox", "t1", 1501, "CNY", NOW))


def delivered_order() -> Order:
    order = paid_order()
    order = _apply(order, order.ship("SF", "SF123", NOW))
    return _apply(order, order.deliver(NOW, timedelta(days=7)))


def test_a_placed_order_waits_for_payment_until_its_deadline() -> None:
    order = placed_order()
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.can_take_payment(NOW)
    assert not order.can_take_payment(DEADLINE)


def test_an_order_goes_from_paid_to_completed_through_shipping_and_delivery() -> None:
    order = delivered_order()
    assert order.status is OrderStatus.DELIVERED
    assert order.auto_complete_at == NOW + timedelta(days=7)
    order = _apply(order, order.complete())
    assert order.status is OrderStatus.COMPLETED
    assert order.version == 6


def test_a_payment_recorded_twice_is_recorded_once() -> None:
    order = paid_order()
    assert order.record_payment("p1", "sandbox", "t1", 1501, "CNY", NOW) == []


def test_a_second_payment_of_a_paid_order_is_refused() -> None:
    with pytest.raises(IllegalTransitionError):
        paid_order().record_payment("p2", "sandbox", "t2", 1501, "CNY", NOW)


@pytest.mark.parametrize(("amount", "currency"), [(1500, "CNY"), (1502, "CNY"), (1501, "USD")])
def test_a_payment_of_another_amount_or_currency_is_refused(amount: int, currency: str) -> None:
    with pytest.raises(PaymentMismatchError):
        placed_order().record_payment("p1", "sandbox", "t1", amount, currency, NOW)


def test_a_cancelled_order_cannot_be_paid_shipped_or_cancelled_into_anything_else() -> None:
    order = placed_order()
    order = _apply(order, order.cancel(CancelReason.TIMEOUT))
    assert order.status is OrderStatus.CANCELLED
    assert order.cancel(CancelReason.BUYER) == []
    with pytest.raises(IllegalTransitionError):
        order.record_payment("p1", "sandbox", "t1", 1501, "CNY", NOW)
    with pytest.raises(IllegalTransitionError):
        order.ship("SF", "1", NOW)


def test_a_paid_order_cannot_be_cancelled_by_the_buyer_but_can_by_a_failed_group() -> None:
    order = paid_order()
    with pytest.raises(IllegalTransitionError):
        order.cancel(CancelReason.BUYER)
    events = order.cancel(CancelReason.GROUP_FAILED)
    assert events[0].was_paid  # type: ignore[union-attr]


def test_a_paid_order_cancelled_by_a_failed_group_owes_its_payment_until_it_is_refunded() -> None:
    paid = paid_order()
    assert paid.payment_owed_back is None
    cancelled = _apply(paid, paid.cancel(CancelReason.GROUP_FAILED))
    owed = cancelled.payment_owed_back
    assert owed is not None
    assert (owed.payment_id, owed.amount) == ("p1", 1501)
    refunded = _apply(cancelled, cancelled.refund_automatically("p1", 1501, "rf1", "group failed"))
    assert refunded.payment_owed_back is None


def test_an_unpaid_order_cancelled_owes_nothing() -> None:
    order = placed_order()
    assert _apply(order, order.cancel(CancelReason.GROUP_FAILED)).payment_owed_back is None


@pytest.mark.parametrize(
    "step",
    [
        lambda o: o.ship("SF", "1", NOW),
        lambda o: o.deliver(NOW, timedelta(days=1)),
        lambda o: o.complete(),
        lambda o: o.request_refund("r1", [("sku-a", 1)], ""),
        lambda o: o.request_return("x1", ReturnKind.RETURN, [("sku-a", 1)], ""),
    ],
)
def test_an_unpaid_order_takes_no_later_step(step) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IllegalTransitionError):
        step(placed_order())


def test_an_order_never_placed_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        Order("m1", "nope").cancel(CancelReason.BUYER)


def test_a_payment_cannot_start_after_the_deadline() -> None:
    with pytest.raises(IllegalTransitionError):
        placed_order().start_payment(PaymentStarted("o1", "p1", "s", 1501, "CNY", "u"), DEADLINE)


def test_a_partial_refund_before_shipping_leaves_the_rest_to_ship() -> None:
    order = paid_order()
    order = _apply(order, order.request_refund("r1", [("sku-a", 1)], "changed mind"))
    assert order.status is OrderStatus.REFUND_REQUESTED
    with pytest.raises(IllegalTransitionError):
        order.ship("SF", "1", NOW)
    events = order.record_refund("r1", "pr1")
    assert not events[0].full  # type: ignore[union-attr]
    assert events[0].before_shipping  # type: ignore[union-attr]
    order = _apply(order, events)
    assert order.status is OrderStatus.PAID
    assert order.refunded_amount == 333
    order = _apply(order, order.ship("SF", "1", NOW))
    assert order.status is OrderStatus.SHIPPED


def test_refunding_every_unit_in_steps_gives_back_exactly_the_total() -> None:
    order = paid_order()
    for refund_id, lines in [("r1", [("sku-a", 1)]), ("r2", [("sku-a", 2), ("sku-b", 1)])]:
        order = _apply(order, order.request_refund(refund_id, lines, ""))
        order = _apply(order, order.record_refund(refund_id, f"p-{refund_id}"))
    assert order.refunded_amount == 1501
    assert order.status is OrderStatus.REFUNDED


def test_a_refund_of_more_units_than_are_left_is_refused() -> None:
    order = paid_order()
    order = _apply(order, order.request_refund("r1", [("sku-a", 2)], ""))
    order = _apply(order, order.record_refund("r1", "p"))
    with pytest.raises(InvalidRefundError):
        order.request_refund("r2", [("sku-a", 2)], "")
    with pytest.raises(InvalidRefundError):
        order.request_refund("r3", [("sku-z", 1)], "")
    with pytest.raises(InvalidRefundError):
        order.request_refund("r4", [], "")


def test_a_refund_asked_twice_with_one_id_is_asked_once() -> None:
    order = paid_order()
    order = _apply(order, order.request_refund("r1", [("sku-a", 1)], ""))
    assert order.request_refund("r1", [("sku-a", 1)], "") == []


def test_a_return_is_approved_received_and_refunded() -> None:
    order = delivered_order()
    order = _apply(order, order.request_return("x1", ReturnKind.RETURN, [("sku-b", 1)], "broken"))
    with pytest.raises(IllegalTransitionError):
        order.complete()
    with pytest.raises(IllegalTransitionError):
        order.receive_return("x1")
    order = _apply(order, order.approve_return("x1"))
    order = _apply(order, order.receive_return("x1"))
    assert order.returns["x1"].state is ReturnState.RECEIVED
    assert order.refunds["x1"].amount == 501
    order = _apply(order, order.record_refund("x1", "pr"))
    assert order.status is OrderStatus.DELIVERED
    assert not order.record_refund("x1", "pr")
    order = _apply(order, order.complete())
    assert order.status is OrderStatus.COMPLETED


def test_a_rejected_return_refunds_nothing_and_lets_the_order_complete() -> None:
    order = delivered_order()
    order = _apply(order, order.request_return("x1", ReturnKind.RETURN, [("sku-a", 1)], ""))
    order = _apply(order, order.reject_return("x1", "used"))
    with pytest.raises(IllegalTransitionError):
        order.approve_return("x1")
    assert order.refunded_amount == 0
    assert _apply(order, order.complete()).status is OrderStatus.COMPLETED


def test_an_exchange_received_refunds_nothing() -> None:
    order = delivered_order()
    order = _apply(order, order.request_return("x1", ReturnKind.EXCHANGE, [("sku-a", 1)], "size"))
    order = _apply(order, order.approve_return("x1"))
    events = order.receive_return("x1")
    assert len(events) == 1
    assert "x1" not in _apply(order, events).refunds


def test_a_second_return_waits_for_the_first_to_close() -> None:
    order = delivered_order()
    order = _apply(order, order.request_return("x1", ReturnKind.RETURN, [("sku-a", 1)], ""))
    with pytest.raises(IllegalTransitionError):
        order.request_return("x2", ReturnKind.RETURN, [("sku-b", 1)], "")


@given(
    total=st.integers(min_value=0, max_value=10**9),
    quantity=st.integers(min_value=1, max_value=50),
    steps=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=50),
)
def test_unit_shares_of_a_line_always_sum_to_its_total(
    total: int, quantity: int, steps: list[int]
) -> None:
    done, paid = 0, 0
    for step in steps:
        take = min(step, quantity - done)
        if take == 0:
            break
        paid += share_of(total, quantity, done + take) - share_of(total, quantity, done)
        done += take
    if done == quantity:
        assert paid == total
    assert 0 <= paid <= total
