"""Room's reactions to other services' events: promotion.events and inventory.events in,
push messages to the rooms they concern out (contracts: livecommerce/promotion/v1 and
livecommerce/inventory/v1 events.proto). Pushes are best effort and may repeat on
redelivery; clients treat them as idempotent by campaign id and state."""

from __future__ import annotations

from typing import Any, Protocol

from livecommerce.inventory.v1 import events_pb2 as inventory_events
from livecommerce.promotion.v1 import events_pb2 as promotion_events
from services.kit.consumer import ConsumedEvent, Handler
from services.kit.db import Connection
from services.kit.wire import moment
from services.room.application.feed import CampaignChange, CouponDrop, RoomFeed
from services.room.application.ports import PushKind

FEED_CONSUMER = "room-feed"


class _CampaignMessage(Protocol):
    campaign_id: str
    room_id: str
    sku_id: str


def _change(
    event: ConsumedEvent, m: _CampaignMessage, kind: PushKind, **details: Any
) -> CampaignChange:
    return CampaignChange(
        event.envelope.merchant_id, m.campaign_id, m.room_id, m.sku_id, kind, **details
    )


def feed_handlers(feed: RoomFeed) -> dict[str, Handler]:
    async def scheduled(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(promotion_events.CampaignScheduled)
        change = _change(
            event,
            m,
            PushKind.CAMPAIGN_SCHEDULED,
            starts_at=moment(m.starts_at),
            ends_at=moment(m.ends_at),
            quantity=m.quantity,
        )
        await feed.campaign(change, conn)

    async def started(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(promotion_events.CampaignStarted)
        change = _change(
            event,
            m,
            PushKind.CAMPAIGN_STARTED,
            starts_at=moment(m.started_at),
            ends_at=moment(m.ends_at),
        )
        await feed.campaign(change, conn)

    async def ended(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(promotion_events.CampaignEnded)
        change = _change(
            event, m, PushKind.CAMPAIGN_ENDED, ends_at=moment(m.ended_at), reason=m.reason
        )
        await feed.campaign(change, conn)

    async def coupon_drop(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(promotion_events.CouponTemplateCreated)
        await feed.coupon_drop(
            CouponDrop(
                event.envelope.merchant_id,
                m.room_id,
                m.template_id,
                m.kind,
                moment(m.claim_ends_at) if m.HasField("claim_ends_at") else None,
            )
        )

    async def reserved(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(inventory_events.StockReserved)
        await feed.reserved(event.envelope.merchant_id, m.sale_id, m.quantity, conn)

    async def released(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(inventory_events.ReservationReleased)
        if not m.returned_to_sku:  # after the sale ended the units left it
            await feed.reserved(event.envelope.merchant_id, m.sale_id, -m.quantity, conn)

    async def sold_out(event: ConsumedEvent, conn: Connection) -> None:
        m = event.payload(inventory_events.SaleSoldOut)
        await feed.sold_out(event.envelope.merchant_id, m.sale_id, conn)

    return {
        promotion_events.CampaignScheduled.DESCRIPTOR.full_name: scheduled,
        promotion_events.CampaignStarted.DESCRIPTOR.full_name: started,
        promotion_events.CampaignEnded.DESCRIPTOR.full_name: ended,
        promotion_events.CouponTemplateCreated.DESCRIPTOR.full_name: coupon_drop,
        inventory_events.StockReserved.DESCRIPTOR.full_name: reserved,
        inventory_events.ReservationReleased.DESCRIPTOR.full_name: released,
        inventory_events.SaleSoldOut.DESCRIPTOR.full_name: sold_out,
    }
