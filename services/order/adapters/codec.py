"""Mapping between order domain events and their protobuf integration events.

Integration events carry what consumers need without a lookup (hold ids, coupon ids, the
group, the share code), so some are richer than the domain event they record; the extra
fields come from the order the event is applied to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from livecommerce.order.v1 import events_pb2 as pb
from services.kit.eventstore import NewEvent, StoredEvent
from services.kit.wire import moment, timestamp
from services.order.domain import order as d

AGGREGATE_ORDER = "order"


def _line_to_proto(line: d.OrderLine) -> pb.OrderLine:
    return pb.OrderLine(
        sku_id=line.sku_id,
        quantity=line.quantity,
        sale_id=line.sale_id,
        hold_id=line.hold_id,
        list_unit_price_minor=line.list_unit_price,
        unit_price_minor=line.unit_price,
        promotion_discount_minor=line.promotion_discount,
        coupon_share_minor=line.coupon_share,
        total_minor=line.total,
        promotion_kind=line.promotion_kind,
        promotion_id=line.promotion_id,
    )


def _line_from_proto(line: pb.OrderLine) -> d.OrderLine:
    return d.OrderLine(
        sku_id=line.sku_id,
        quantity=line.quantity,
        sale_id=line.sale_id,
        hold_id=line.hold_id,
        list_unit_price=line.list_unit_price_minor,
        unit_price=line.unit_price_minor,
        promotion_discount=line.promotion_discount_minor,
        coupon_share=line.coupon_share_minor,
        total=line.total_minor,
        promotion_kind=line.promotion_kind,
        promotion_id=line.promotion_id,
    )


def _refund_lines(lines: tuple[d.RefundLine, ...]) -> list[pb.RefundLine]:
    return [
        pb.RefundLine(sku_id=x.sku_id, quantity=x.quantity, amount_minor=x.amount) for x in lines
    ]


def _refund_lines_from(lines: Any) -> tuple[d.RefundLine, ...]:
    return tuple(d.RefundLine(x.sku_id, x.quantity, x.amount_minor) for x in lines)


def to_proto(event: d.OrderEvent, order: d.Order) -> Message:
    """``order`` is the order before the event (for the fields consumers need)."""
    match event:
        case d.OrderPlaced():
            t = event.totals
            placed = pb.OrderPlaced(
                order_id=event.order_id,
                buyer_id=event.buyer_id,
                room_id=event.room_id,
                channel=event.channel,
                currency=event.currency,
                lines=[_line_to_proto(x) for x in event.lines],
                coupon_ids=list(event.coupon_ids),
                group_id=event.group_id,
                share_code=event.share_code,
                subtotal_minor=t.subtotal,
                promotion_discount_minor=t.promotion_discount,
                coupon_discount_minor=t.coupon_discount,
                shipping_fee_minor=t.shipping_fee,
                shipping_discount_minor=t.shipping_discount,
                total_minor=t.total,
                price_explanation=list(event.price_explanation),
            )
            placed.payment_deadline.CopyFrom(timestamp(event.payment_deadline))
            return placed
        case d.PaymentStarted():
            return pb.PaymentStarted(
                order_id=event.order_id,
                payment_id=event.payment_id,
                provider=event.provider,
                amount_minor=event.amount,
                currency=event.currency,
                pay_url=event.pay_url,
            )
        case d.OrderPaid():
            details = order.details
            paid = pb.OrderPaid(
                order_id=event.order_id,
                buyer_id=details.buyer_id,
                payment_id=event.payment_id,
                provider=event.provider,
                provider_transaction_id=event.provider_transaction_id,
                amount_minor=event.amount,
                currency=event.currency,
                hold_ids=list(order.hold_ids),
                coupon_ids=list(details.coupon_ids),
                group_id=details.group_id,
                room_id=details.room_id,
                share_code=details.share_code,
            )
            paid.paid_at.CopyFrom(timestamp(event.paid_at))
            return paid
        case d.OrderCancelled():
            details = order.details
            return pb.OrderCancelled(
                order_id=event.order_id,
                buyer_id=details.buyer_id,
                reason=event.reason.value,
                hold_ids=list(order.hold_ids),
                coupon_ids=list(details.coupon_ids),
                group_id=details.group_id,
                room_id=details.room_id,
                was_paid=event.was_paid,
            )
        case d.OrderShipped():
            shipped = pb.OrderShipped(
                order_id=event.order_id,
                carrier=event.carrier,
                tracking_number=event.tracking_number,
            )
            shipped.shipped_at.CopyFrom(timestamp(event.shipped_at))
            return shipped
        case d.OrderDelivered():
            delivered = pb.OrderDelivered(order_id=event.order_id)
            delivered.delivered_at.CopyFrom(timestamp(event.delivered_at))
            delivered.auto_complete_at.CopyFrom(timestamp(event.auto_complete_at))
            return delivered
        case d.OrderCompleted():
            details = order.details
            return pb.OrderCompleted(
                order_id=event.order_id,
                buyer_id=details.buyer_id,
                share_code=details.share_code,
                total_minor=details.totals.total,
                refunded_minor=order.refunded_amount,
            )
        case d.RefundRequested():
            return pb.RefundRequested(
                order_id=event.order_id,
                refund_id=event.refund_id,
                lines=_refund_lines(event.lines),
                amount_minor=event.amount,
                reason=event.reason,
            )
        case d.OrderRefunded():
            details = order.details
            this_refund = {x.sku_id: x.quantity for x in event.lines}
            fully_refunded = {
                line.sku_id
                for line in details.lines
                if line.sku_id in this_refund
                and order.refunded_quantity(line.sku_id, including_requested=False)
                + this_refund[line.sku_id]
                >= line.quantity
            }
            return pb.OrderRefunded(
                order_id=event.order_id,
                refund_id=event.refund_id,
                buyer_id=details.buyer_id,
                lines=_refund_lines(event.lines),
                amount_minor=event.amount,
                currency=details.currency,
                full=event.full,
                before_shipping=event.before_shipping,
                hold_ids=[x.hold_id for x in details.lines if x.sku_id in fully_refunded],
                coupon_ids=list(details.coupon_ids),
                group_id=details.group_id,
                share_code=details.share_code,
                provider_refund_id=event.provider_refund_id,
            )
        case d.ReturnRequested():
            return pb.ReturnRequested(
                order_id=event.order_id,
                return_id=event.return_id,
                kind=event.kind.value,
                lines=_refund_lines(event.lines),
                reason=event.reason,
            )
        case d.ReturnApproved():
            return pb.ReturnApproved(order_id=event.order_id, return_id=event.return_id)
        case d.ReturnRejected():
            return pb.ReturnRejected(
                order_id=event.order_id, return_id=event.return_id, reason=event.reason
            )
        case d.ReturnReceived():
            return pb.ReturnReceived(order_id=event.order_id, return_id=event.return_id)
        case d.PaymentRefundedAutomatically():
            return pb.PaymentRefundedAutomatically(
                order_id=event.order_id,
                payment_id=event.payment_id,
                amount_minor=event.amount,
                provider_refund_id=event.provider_refund_id,
                reason=event.reason,
            )
    raise TypeError(f"not an order event: {event!r}")


def _placed(m: pb.OrderPlaced) -> d.OrderPlaced:
    return d.OrderPlaced(
        order_id=m.order_id,
        buyer_id=m.buyer_id,
        room_id=m.room_id,
        channel=m.channel,
        currency=m.currency,
        lines=tuple(_line_from_proto(x) for x in m.lines),
        coupon_ids=tuple(m.coupon_ids),
        group_id=m.group_id,
        share_code=m.share_code,
        totals=d.Totals(
            subtotal=m.subtotal_minor,
            promotion_discount=m.promotion_discount_minor,
            coupon_discount=m.coupon_discount_minor,
            shipping_fee=m.shipping_fee_minor,
            shipping_discount=m.shipping_discount_minor,
            total=m.total_minor,
        ),
        payment_deadline=moment(m.payment_deadline),
        price_explanation=tuple(m.price_explanation),
    )


_DECODERS: dict[str, tuple[type[Message], Callable[[Any], d.OrderEvent]]] = {
    pb.OrderPlaced.DESCRIPTOR.full_name: (pb.OrderPlaced, _placed),
    pb.PaymentStarted.DESCRIPTOR.full_name: (
        pb.PaymentStarted,
        lambda m: d.PaymentStarted(
            m.order_id, m.payment_id, m.provider, m.amount_minor, m.currency, m.pay_url
        ),
    ),
    pb.OrderPaid.DESCRIPTOR.full_name: (
        pb.OrderPaid,
        lambda m: d.OrderPaid(
            m.order_id,
            m.payment_id,
            m.provider,
            m.provider_transaction_id,
            m.amount_minor,
            m.currency,
            moment(m.paid_at),
        ),
    ),
    pb.OrderCancelled.DESCRIPTOR.full_name: (
        pb.OrderCancelled,
        lambda m: d.OrderCancelled(m.order_id, d.CancelReason(m.reason), m.was_paid),
    ),
    pb.OrderShipped.DESCRIPTOR.full_name: (
        pb.OrderShipped,
        lambda m: d.OrderShipped(m.order_id, m.carrier, m.tracking_number, moment(m.shipped_at)),
    ),
    pb.OrderDelivered.DESCRIPTOR.full_name: (
        pb.OrderDelivered,
        lambda m: d.OrderDelivered(m.order_id, moment(m.delivered_at), moment(m.auto_complete_at)),
    ),
    pb.OrderCompleted.DESCRIPTOR.full_name: (
        pb.OrderCompleted,
        lambda m: d.OrderCompleted(m.order_id),
    ),
    pb.RefundRequested.DESCRIPTOR.full_name: (
        pb.RefundRequested,
        lambda m: d.RefundRequested(
            m.order_id, m.refund_id, _refund_lines_from(m.lines), m.amount_minor, m.reason
        ),
    ),
    pb.OrderRefunded.DESCRIPTOR.full_name: (
        pb.OrderRefunded,
        lambda m: d.OrderRefunded(
            m.order_id,
            m.refund_id,
            _refund_lines_from(m.lines),
            m.amount_minor,
            m.full,
            m.before_shipping,
            m.provider_refund_id,
        ),
    ),
    pb.ReturnRequested.DESCRIPTOR.full_name: (
        pb.ReturnRequested,
        lambda m: d.ReturnRequested(
            m.order_id,
            m.return_id,
            d.ReturnKind(m.kind),
            _refund_lines_from(m.lines),
            m.reason,
        ),
    ),
    pb.ReturnApproved.DESCRIPTOR.full_name: (
        pb.ReturnApproved,
        lambda m: d.ReturnApproved(m.order_id, m.return_id),
    ),
    pb.ReturnRejected.DESCRIPTOR.full_name: (
        pb.ReturnRejected,
        lambda m: d.ReturnRejected(m.order_id, m.return_id, m.reason),
    ),
    pb.ReturnReceived.DESCRIPTOR.full_name: (
        pb.ReturnReceived,
        lambda m: d.ReturnReceived(m.order_id, m.return_id),
    ),
    pb.PaymentRefundedAutomatically.DESCRIPTOR.full_name: (
        pb.PaymentRefundedAutomatically,
        lambda m: d.PaymentRefundedAutomatically(
            m.order_id, m.payment_id, m.amount_minor, m.provider_refund_id, m.reason
        ),
    ),
}


def encode(event: d.OrderEvent, order: d.Order) -> NewEvent:
    return NewEvent.of(to_proto(event, order))


def decode(stored: StoredEvent) -> d.OrderEvent:
    message_type, build = _DECODERS[stored.event_type]
    message = message_type()
    message.ParseFromString(stored.payload)
    return build(message)
