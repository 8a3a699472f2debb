"""From an envelope on one of the five topics to a domain fact (or None: not counted).

The contracts are ``proto/livecommerce/<service>/v1/events.proto``. A message's own time is
used when it states one; otherwise the envelope's ``occurred_at``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from livecommerce.inventory.v1 import events_pb2 as inventory
from livecommerce.kit.v1.envelope_pb2 import Envelope
from livecommerce.order.v1 import events_pb2 as order
from livecommerce.promotion.v1 import events_pb2 as promotion
from livecommerce.referral.v1 import events_pb2 as referral
from livecommerce.room.v1 import events_pb2 as room
from services.analytics.domain import facts as f
from services.kit.wire import moment

M = TypeVar("M", bound=Message)
Decoder = Callable[[Envelope], f.Fact | None]


def _when(stamp: Timestamp, envelope: Envelope) -> datetime:
    return moment(stamp if stamp.seconds or stamp.nanos else envelope.occurred_at)


def _occurred(envelope: Envelope) -> datetime:
    return moment(envelope.occurred_at)


def _parse(kind: type[M], envelope: Envelope) -> M:
    message = kind()
    message.ParseFromString(envelope.payload)
    return message


def _order_lines(lines: Iterable[order.OrderLine]) -> tuple[f.Line, ...]:
    return tuple(f.Line(x.sku_id, x.quantity, x.total_minor) for x in lines)


def _refund_lines(lines: Iterable[order.RefundLine]) -> tuple[f.Line, ...]:
    return tuple(f.Line(x.sku_id, x.quantity, x.amount_minor) for x in lines)


def _room_scheduled(e: Envelope) -> f.Fact:
    m = _parse(room.RoomScheduled, e)
    return f.RoomScheduled(e.merchant_id, m.room_id, m.host_id, m.title, _when(m.starts_at, e))


def _room_started(e: Envelope) -> f.Fact:
    m = _parse(room.RoomStarted, e)
    return f.RoomStarted(e.merchant_id, m.room_id, m.host_id, _when(m.started_at, e))


def _room_ended(e: Envelope) -> f.Fact:
    m = _parse(room.RoomEnded, e)
    return f.RoomEnded(e.merchant_id, m.room_id, _when(m.ended_at, e))


def _viewer_joined(e: Envelope) -> f.Fact:
    m = _parse(room.ViewerJoined, e)
    return f.ViewerJoined(
        e.merchant_id,
        m.room_id,
        m.visit_id or e.aggregate_id,
        m.viewer_id,
        m.channel,
        m.entry,
        m.share_code,
        _when(m.joined_at, e),
    )


def _viewer_left(e: Envelope) -> f.Fact:
    m = _parse(room.ViewerLeft, e)
    return f.ViewerLeft(
        e.merchant_id,
        m.room_id,
        m.visit_id or e.aggregate_id,
        m.viewer_id,
        m.watched_seconds,
        _when(m.left_at, e),
    )


def _comment(e: Envelope) -> f.Fact:
    m = _parse(room.CommentPosted, e)
    return f.CommentPosted(e.merchant_id, m.room_id, m.viewer_id, _when(m.posted_at, e))


def _pinned(e: Envelope) -> f.Fact:
    m = _parse(room.ProductPinned, e)
    return f.ProductPinned(e.merchant_id, m.room_id, m.sku_id, _occurred(e))


def _unpinned(e: Envelope) -> f.Fact:
    m = _parse(room.ProductUnpinned, e)
    return f.ProductUnpinned(e.merchant_id, m.room_id, m.sku_id, _occurred(e))


def _draw(e: Envelope) -> f.Fact:
    m = _parse(room.DrawHeld, e)
    return f.DrawHeld(
        e.merchant_id, m.room_id, m.draw_id, m.prize, len(m.winners), _when(m.held_at, e)
    )


def _subscribed(e: Envelope) -> f.Fact | None:
    m = _parse(room.ReminderSubscribed, e)
    if m.target != "room":
        return None  # a host's followers: no room to count them in
    return f.ReminderSubscribed(e.merchant_id, m.target_id, m.viewer_id, _when(m.subscribed_at, e))


def _reminder(e: Envelope) -> f.Fact:
    m = _parse(room.ReminderSent, e)
    return f.ReminderSent(e.merchant_id, m.room_id, m.viewer_id, _when(m.sent_at, e))


def _placed(e: Envelope) -> f.Fact:
    m = _parse(order.OrderPlaced, e)
    return f.OrderPlaced(
        e.merchant_id,
        m.order_id,
        m.buyer_id,
        m.room_id,
        m.channel,
        m.share_code,
        _order_lines(m.lines),
        m.total_minor,
        _occurred(e),
    )


def _paid(e: Envelope) -> f.Fact:
    m = _parse(order.OrderPaid, e)
    return f.OrderPaid(
        e.merchant_id, m.order_id, m.buyer_id, m.amount_minor, _when(m.paid_at, e), m.room_id
    )


def _cancelled(e: Envelope) -> f.Fact:
    m = _parse(order.OrderCancelled, e)
    return f.OrderCancelled(e.merchant_id, m.order_id, _occurred(e), m.room_id)


def _refunded(e: Envelope) -> f.Fact:
    m = _parse(order.OrderRefunded, e)
    return f.OrderRefunded(
        e.merchant_id,
        m.order_id,
        m.refund_id or e.event_id,
        m.amount_minor,
        _refund_lines(m.lines),
        _occurred(e),
    )


def _campaign_scheduled(e: Envelope) -> f.Fact:
    m = _parse(promotion.CampaignScheduled, e)
    return f.CampaignScheduled(e.merchant_id, m.campaign_id, m.room_id, m.sku_id, _occurred(e))


def _campaign_started(e: Envelope) -> f.Fact:
    m = _parse(promotion.CampaignStarted, e)
    return f.FlashSaleStarted(
        e.merchant_id, m.campaign_id, m.room_id, m.sku_id, _when(m.started_at, e)
    )


def _coupon_template(e: Envelope) -> f.Fact | None:
    m = _parse(promotion.CouponTemplateCreated, e)
    if not m.room_id:
        return None
    return f.CouponDropped(
        e.merchant_id, m.template_id, m.room_id, m.quota, _when(m.claim_starts_at, e)
    )


def _stock(
    kind: type[inventory.StockReceived]
    | type[inventory.StockAllocatedToSale]
    | type[inventory.AllocationReturned],
) -> Decoder:
    def decode(e: Envelope) -> f.Fact:
        m = _parse(kind, e)
        return f.StockLevel(
            e.merchant_id, m.sku_id, m.on_hand_after, e.aggregate_version, _occurred(e)
        )

    return decode


def _sale_scheduled(e: Envelope) -> f.Fact:
    m = _parse(inventory.FlashSaleScheduled, e)
    return f.SaleScheduled(e.merchant_id, m.sale_id, m.sku_id, m.allocated, _occurred(e))


def _reserved(e: Envelope) -> f.Fact | None:
    m = _parse(inventory.StockReserved, e)
    if not m.sale_id:
        return None
    return f.SaleReserved(e.merchant_id, m.sale_id, m.sku_id, m.quantity, _occurred(e))


def _released(e: Envelope) -> f.Fact | None:
    m = _parse(inventory.ReservationReleased, e)
    if not m.sale_id:
        return None
    return f.SaleReleased(
        e.merchant_id, m.sale_id, m.sku_id, m.quantity, m.returned_to_sku, _occurred(e)
    )


def _sale_ended(e: Envelope) -> f.Fact:
    m = _parse(inventory.FlashSaleEnded, e)
    return f.SaleEnded(e.merchant_id, m.sale_id, _occurred(e))


def _view_attributed(e: Envelope) -> f.Fact:
    m = _parse(referral.ViewAttributed, e)
    return f.ViewAttributed(
        e.merchant_id, m.room_id, m.viewer_id, m.sharer_id, _when(m.joined_at, e)
    )


def _invitee(e: Envelope) -> f.Fact:
    m = _parse(referral.InviteeBound, e)
    return f.InviteeBound(e.merchant_id, m.invitee_id, m.inviter_id, _occurred(e))


def _order_attributed(e: Envelope) -> f.Fact:
    m = _parse(referral.OrderAttributed, e)
    return f.OrderAttributed(e.merchant_id, m.order_id, m.room_id, m.sharer_id, _occurred(e))


def _programme(e: Envelope) -> f.Fact:
    m = _parse(referral.ProgrammeConfigured, e)
    return f.CategoriesConfigured(
        e.merchant_id, m.version or e.aggregate_version, _occurred(e), dict(m.sku_categories)
    )


def _name(message: type[Message]) -> str:
    return message.DESCRIPTOR.full_name


DECODERS: dict[str, Decoder] = {
    _name(room.RoomScheduled): _room_scheduled,
    _name(room.RoomStarted): _room_started,
    _name(room.RoomEnded): _room_ended,
    _name(room.ViewerJoined): _viewer_joined,
    _name(room.ViewerLeft): _viewer_left,
    _name(room.CommentPosted): _comment,
    _name(room.ProductPinned): _pinned,
    _name(room.ProductUnpinned): _unpinned,
    _name(room.DrawHeld): _draw,
    _name(room.ReminderSent): _reminder,
    _name(room.ReminderSubscribed): _subscribed,
    _name(order.OrderPlaced): _placed,
    _name(order.OrderPaid): _paid,
    _name(order.OrderCancelled): _cancelled,
    _name(order.OrderRefunded): _refunded,
    _name(promotion.CampaignScheduled): _campaign_scheduled,
    _name(promotion.CampaignStarted): _campaign_started,
    _name(promotion.CouponTemplateCreated): _coupon_template,
    _name(inventory.StockReceived): _stock(inventory.StockReceived),
    _name(inventory.StockAllocatedToSale): _stock(inventory.StockAllocatedToSale),
    _name(inventory.AllocationReturned): _stock(inventory.AllocationReturned),
    _name(inventory.FlashSaleScheduled): _sale_scheduled,
    _name(inventory.StockReserved): _reserved,
    _name(inventory.ReservationReleased): _released,
    _name(inventory.FlashSaleEnded): _sale_ended,
    _name(referral.ViewAttributed): _view_attributed,
    _name(referral.InviteeBound): _invitee,
    _name(referral.OrderAttributed): _order_attributed,
    _name(referral.ProgrammeConfigured): _programme,
}


def decode(envelope: Envelope) -> f.Fact | None:
    """The fact of a counted event type; None for every other type (not an error: each
    topic carries many events analytics does not count)."""
    decoder = DECODERS.get(envelope.event_type)
    return decoder(envelope) if decoder else None
