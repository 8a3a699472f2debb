"""What promotion does when orders change (the worker's consumer of ``order.events``).

Each handler runs in the consumer's transaction (with the inbox row), so a redelivered
event changes nothing: OrderPlaced records a group member's order, OrderPaid redeems the
order's coupons and counts the group member, OrderCancelled releases the coupons and lets
the member leave, OrderRefunded in full restores the coupons the template gives back and
lets the member leave.
"""

from __future__ import annotations

from collections.abc import Mapping

from livecommerce.order.v1 import events_pb2 as order_pb
from services.kit.consumer import ConsumedEvent, Handler
from services.kit.db import Connection
from services.kit.wire import moment
from services.promotion.application.coupons import Coupons
from services.promotion.application.group_buys import GroupBuys


def order_event_handlers(coupons: Coupons, groups: GroupBuys) -> Mapping[str, Handler]:
    async def placed(event: ConsumedEvent, conn: Connection) -> None:
        order = event.payload(order_pb.OrderPlaced)
        if order.group_id:
            await groups.order_placed(
                conn, event.envelope.merchant_id, order.group_id, order.buyer_id, order.order_id
            )

    async def paid(event: ConsumedEvent, conn: Connection) -> None:
        order = event.payload(order_pb.OrderPaid)
        merchant_id = event.envelope.merchant_id
        await coupons.redeem(conn, merchant_id, order.order_id, list(order.coupon_ids))
        if order.group_id:
            paid_at = (
                moment(order.paid_at)
                if order.HasField("paid_at")
                else moment(event.envelope.occurred_at)
            )
            await groups.paid(
                conn, merchant_id, order.group_id, order.buyer_id, order.order_id, paid_at
            )

    async def cancelled(event: ConsumedEvent, conn: Connection) -> None:
        order = event.payload(order_pb.OrderCancelled)
        merchant_id = event.envelope.merchant_id
        await coupons.release_order(conn, merchant_id, order.order_id, "cancelled")
        if order.group_id:
            await groups.left(
                conn, merchant_id, order.group_id, order.buyer_id, order.order_id, "cancelled"
            )

    async def refunded(event: ConsumedEvent, conn: Connection) -> None:
        order = event.payload(order_pb.OrderRefunded)
        if not order.full:
            return
        merchant_id = event.envelope.merchant_id
        await coupons.restore(conn, merchant_id, order.order_id, list(order.coupon_ids))
        if order.group_id:
            await groups.left(
                conn, merchant_id, order.group_id, order.buyer_id, order.order_id, "refunded"
            )

    return {
        order_pb.OrderPlaced.DESCRIPTOR.full_name: placed,
        order_pb.OrderPaid.DESCRIPTOR.full_name: paid,
        order_pb.OrderCancelled.DESCRIPTOR.full_name: cancelled,
        order_pb.OrderRefunded.DESCRIPTOR.full_name: refunded,
    }
