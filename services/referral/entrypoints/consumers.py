"""Referral's reactions to other services' events: room.events (rooms, views) and
order.events (placed, paid, refunded, cancelled). Each handler writes through the
consumer's transaction, so its rows, ledger postings and events commit with the inbox row:
a redelivered event changes nothing.

The contracts are livecommerce/room/v1/events.proto and livecommerce/order/v1/events.proto.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from livecommerce.order.v1 import events_pb2 as order_events
from livecommerce.room.v1 import events_pb2 as room_events
from services.kit.consumer import ConsumedEvent, Handler
from services.kit.db import Connection
from services.kit.wire import moment
from services.referral.application.attribution import (
    AttributeOrder,
    AttributeView,
    attribute_order,
    attribute_view,
    record_room,
)
from services.referral.application.commission import (
    RecordPayment,
    RecordRefund,
    record_cancellation,
    record_payment,
    record_refund,
)
from services.referral.application.ports import RoomInfo
from services.referral.bootstrap import Referral
from services.referral.domain.programme import PricedLine

ROOMS_CONSUMER = "referral-rooms"
ORDERS_CONSUMER = "referral-orders"


def _at(stamp: Timestamp, event: ConsumedEvent) -> datetime:
    """The time a message states, or, when it states none, the time its event occurred."""
    return moment(stamp if stamp.seconds or stamp.nanos else event.envelope.occurred_at)


def room_event_handlers(parts: Referral) -> dict[str, Handler]:
    async def scheduled(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(room_events.RoomScheduled)
        room = RoomInfo(message.room_id, message.title, message.host_id, moment(message.starts_at))
        await record_room(event.envelope.merchant_id, room, parts.books.on(conn))

    async def joined(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(room_events.ViewerJoined)
        command = AttributeView(
            merchant_id=event.envelope.merchant_id,
            joined_event_id=event.envelope.event_id,
            viewer_id=message.viewer_id,
            room_id=message.room_id,
            share_code=message.share_code,
            entry=message.entry,
            channel=message.channel,
            device_id=message.device_id,
            joined_at=_at(message.joined_at, event),
        )
        await attribute_view(command, parts.books.on(conn), parts.signer)

    return {
        room_events.RoomScheduled.DESCRIPTOR.full_name: scheduled,
        room_events.ViewerJoined.DESCRIPTOR.full_name: joined,
    }


def order_event_handlers(parts: Referral) -> dict[str, Handler]:
    async def placed(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(order_events.OrderPlaced)
        command = AttributeOrder(
            merchant_id=event.envelope.merchant_id,
            order_id=message.order_id,
            buyer_id=message.buyer_id,
            room_id=message.room_id,
            share_code=message.share_code,
            total_minor=message.total_minor,
            currency=message.currency,
            lines=[
                PricedLine(line.sku_id, line.total_minor, line.promotion_kind)
                for line in message.lines
            ],
            placed_at=moment(event.envelope.occurred_at),
        )
        await attribute_order(
            command, parts.books.on(conn), parts.signer, parts.default_attribution_window
        )

    async def paid(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(order_events.OrderPaid)
        command = RecordPayment(
            merchant_id=event.envelope.merchant_id,
            order_id=message.order_id,
            buyer_id=message.buyer_id,
            amount_minor=message.amount_minor,
            currency=message.currency,
            paid_at=_at(message.paid_at, event),
        )
        await record_payment(command, parts.books.on(conn), parts.boards)

    async def refunded(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(order_events.OrderRefunded)
        command = RecordRefund(
            merchant_id=event.envelope.merchant_id,
            order_id=message.order_id,
            refund_id=message.refund_id or event.envelope.event_id,
            amount_minor=message.amount_minor,
            full=message.full,
        )
        await record_refund(command, parts.books.on(conn), parts.boards)

    async def cancelled(event: ConsumedEvent, conn: Connection) -> None:
        message = event.payload(order_events.OrderCancelled)
        if not message.was_paid:
            await record_cancellation(
                event.envelope.merchant_id, message.order_id, parts.books.on(conn)
            )

    return {
        order_events.OrderPlaced.DESCRIPTOR.full_name: placed,
        order_events.OrderPaid.DESCRIPTOR.full_name: paid,
        order_events.OrderRefunded.DESCRIPTOR.full_name: refunded,
        order_events.OrderCancelled.DESCRIPTOR.full_name: cancelled,
    }
