"""Inventory's reactions to other services' events: order.events in, holds released.

The contract is livecommerce/order/v1/events.proto. OrderPaid needs nothing here: the order
service confirms the holds through the Confirm RPC before it records the payment.
"""

from __future__ import annotations

from livecommerce.order.v1 import events_pb2 as order_events
from services.inventory.application.orders import ReleaseOrderHolds, release_order_holds
from services.inventory.application.ports import HoldReleaser
from services.inventory.domain.sale import ReleaseReason
from services.kit.consumer import ConsumedEvent, Handler
from services.kit.db import Connection

ORDERS_CONSUMER = "inventory-orders"
TIMEOUT = "timeout"
"""OrderCancelled.reason when the order was not paid in time: its holds expired."""


def order_event_handlers(holds: HoldReleaser) -> dict[str, Handler]:
    """Handlers by event type. The releases write through their own transactions (under
    the sale's lock, with Redis); they are idempotent, so the inbox's transaction need not
    hold them."""

    async def cancelled(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(order_events.OrderCancelled)
        reason = ReleaseReason.EXPIRED if message.reason == TIMEOUT else ReleaseReason.CANCELLED
        await release_order_holds(
            ReleaseOrderHolds(
                event.envelope.merchant_id, message.order_id, message.hold_ids, reason
            ),
            holds,
        )

    async def refunded(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(order_events.OrderRefunded)
        if not message.before_shipping:
            return  # the goods left the warehouse: the units are not the sale's any more
        await release_order_holds(
            ReleaseOrderHolds(
                event.envelope.merchant_id,
                message.order_id,
                message.hold_ids,
                ReleaseReason.REFUNDED,
            ),
            holds,
        )

    return {
        order_events.OrderCancelled.DESCRIPTOR.full_name: cancelled,
        order_events.OrderRefunded.DESCRIPTOR.full_name: refunded,
    }
