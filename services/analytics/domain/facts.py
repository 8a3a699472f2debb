"""What analytics learns from other services' events, as plain values.

Each fact is one consumed event, translated from its protobuf message by the adapters; the
domain folds facts and never sees protobuf. Every fact names its merchant (the envelope's)
and the moment it happened (the time the message states, else the envelope's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Line:
    sku_id: str
    quantity: int
    total_minor: int


@dataclass(frozen=True)
class RoomScheduled:
    merchant_id: str
    room_id: str
    host_id: str
    title: str
    at: datetime


@dataclass(frozen=True)
class RoomStarted:
    merchant_id: str
    room_id: str
    host_id: str
    at: datetime


@dataclass(frozen=True)
class RoomEnded:
    merchant_id: str
    room_id: str
    at: datetime


@dataclass(frozen=True)
class ViewerJoined:
    merchant_id: str
    room_id: str
    visit_id: str
    viewer_id: str
    channel: str
    entry: str
    share_code: str
    at: datetime


@dataclass(frozen=True)
class ViewerLeft:
    merchant_id: str
    room_id: str
    visit_id: str
    viewer_id: str
    watched_seconds: int
    at: datetime


@dataclass(frozen=True)
class CommentPosted:
    merchant_id: str
    room_id: str
    viewer_id: str
    at: datetime


@dataclass(frozen=True)
class ProductPinned:
    merchant_id: str
    room_id: str
    sku_id: str
    at: datetime


@dataclass(frozen=True)
class ProductUnpinned:
    merchant_id: str
    room_id: str
    sku_id: str
    at: datetime


@dataclass(frozen=True)
class DrawHeld:
    merchant_id: str
    room_id: str
    draw_id: str
    prize: str
    winners: int
    at: datetime


@dataclass(frozen=True)
class ReminderSent:
    merchant_id: str
    room_id: str
    viewer_id: str
    at: datetime


@dataclass(frozen=True)
class ReminderSubscribed:
    """A viewer subscribed to a room's start reminder (a new subscriber of the room)."""

    merchant_id: str
    room_id: str
    viewer_id: str
    at: datetime


@dataclass(frozen=True)
class OrderPlaced:
    merchant_id: str
    order_id: str
    buyer_id: str
    room_id: str
    channel: str
    share_code: str
    lines: tuple[Line, ...]
    total_minor: int
    at: datetime


@dataclass(frozen=True)
class OrderPaid:
    """``room_id``, ``channel`` and ``lines`` come from the order as it was placed: the
    processor fills them in from the OrderPlaced it recorded (same order stream, so earlier
    on the same partition)."""

    merchant_id: str
    order_id: str
    buyer_id: str
    amount_minor: int
    at: datetime
    room_id: str = ""
    channel: str = ""
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True)
class OrderCancelled:
    merchant_id: str
    order_id: str
    at: datetime
    room_id: str = ""


@dataclass(frozen=True)
class OrderRefunded:
    merchant_id: str
    order_id: str
    refund_id: str
    amount_minor: int
    lines: tuple[Line, ...]
    at: datetime


@dataclass(frozen=True)
class FlashSaleStarted:
    """A promotion campaign (its id is the inventory sale id) went live in a room."""

    merchant_id: str
    campaign_id: str
    room_id: str
    sku_id: str
    at: datetime


@dataclass(frozen=True)
class CampaignScheduled:
    merchant_id: str
    campaign_id: str
    room_id: str
    sku_id: str
    at: datetime


@dataclass(frozen=True)
class CouponDropped:
    merchant_id: str
    template_id: str
    room_id: str
    quota: int
    at: datetime


@dataclass(frozen=True)
class StockLevel:
    """A SKU-stream event stating the SKU's unallocated units after it."""

    merchant_id: str
    sku_id: str
    on_hand: int
    version: int
    at: datetime


@dataclass(frozen=True)
class SaleScheduled:
    merchant_id: str
    sale_id: str
    sku_id: str
    allocated: int
    at: datetime


@dataclass(frozen=True)
class SaleReserved:
    merchant_id: str
    sale_id: str
    sku_id: str
    quantity: int
    at: datetime


@dataclass(frozen=True)
class SaleReleased:
    """A hold given back: to the sale (counted here) or, after the sale ended, to the SKU
    (then a SKU-stream event states the new on-hand)."""

    merchant_id: str
    sale_id: str
    sku_id: str
    quantity: int
    returned_to_sku: bool
    at: datetime


@dataclass(frozen=True)
class SaleEnded:
    merchant_id: str
    sale_id: str
    at: datetime


@dataclass(frozen=True)
class ViewAttributed:
    merchant_id: str
    room_id: str
    viewer_id: str
    sharer_id: str
    at: datetime


@dataclass(frozen=True)
class InviteeBound:
    merchant_id: str
    invitee_id: str
    inviter_id: str
    at: datetime


@dataclass(frozen=True)
class OrderAttributed:
    merchant_id: str
    order_id: str
    room_id: str
    sharer_id: str
    at: datetime


@dataclass(frozen=True)
class CategoriesConfigured:
    merchant_id: str
    version: int
    at: datetime
    categories: Mapping[str, str] = field(default_factory=dict)


Fact = (
    RoomScheduled
    | RoomStarted
    | RoomEnded
    | ViewerJoined
    | ViewerLeft
    | CommentPosted
    | ProductPinned
    | ProductUnpinned
    | DrawHeld
    | ReminderSent
    | ReminderSubscribed
    | OrderPlaced
    | OrderPaid
    | OrderCancelled
    | OrderRefunded
    | CampaignScheduled
    | FlashSaleStarted
    | CouponDropped
    | StockLevel
    | SaleScheduled
    | SaleReserved
    | SaleReleased
    | SaleEnded
    | ViewAttributed
    | InviteeBound
    | OrderAttributed
    | CategoriesConfigured
)
