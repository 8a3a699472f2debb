"""What other services' events mean to a room's viewers: campaigns scheduled, started and
ended, coupon drops, and the stock left of the room's flash sales."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.db import Connection
from services.room.application.ports import (
    CampaignBook,
    Clock,
    Push,
    PushKind,
    PushMessage,
    RoomCampaign,
)


@dataclass(frozen=True)
class CampaignChange:
    merchant_id: str
    campaign_id: str
    room_id: str
    sku_id: str
    kind: PushKind
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    quantity: int = 0
    reason: str = ""


@dataclass(frozen=True)
class CouponDrop:
    merchant_id: str
    room_id: str
    template_id: str
    kind: str
    claim_ends_at: datetime | None


class RoomFeed:
    def __init__(self, book: CampaignBook, push: Push, *, clock: Clock) -> None:
        self._book = book
        self._push = push
        self._clock = clock

    def _countdown(self, until: datetime | None) -> dict[str, object]:
        if until is None:
            return {}
        seconds = max(0, int((until - self._clock()).total_seconds()))
        return {"countdown_seconds": seconds}

    async def campaign(self, change: CampaignChange, conn: Connection) -> None:
        """Campaigns of no room are not the room's business."""
        if not change.room_id:
            return
        data: dict[str, object] = {"campaign_id": change.campaign_id, "sku_id": change.sku_id}
        if change.kind is PushKind.CAMPAIGN_SCHEDULED:
            await self._book.remember(
                conn,
                change.merchant_id,
                change.campaign_id,
                change.room_id,
                change.sku_id,
                change.quantity,
            )
            data |= {"quantity": change.quantity, **self._countdown(change.starts_at)}
        if change.starts_at is not None:
            data["starts_at"] = change.starts_at.isoformat()
        if change.ends_at is not None:
            data["ends_at"] = change.ends_at.isoformat()
            if change.kind is PushKind.CAMPAIGN_STARTED:
                data |= self._countdown(change.ends_at)
        if change.reason:
            data["reason"] = change.reason
        await self._say(change.merchant_id, change.room_id, change.kind, data)

    async def coupon_drop(self, drop: CouponDrop) -> None:
        if not drop.room_id:
            return
        data: dict[str, object] = {"template_id": drop.template_id, "kind": drop.kind}
        if drop.claim_ends_at is not None:
            data |= {"claim_ends_at": drop.claim_ends_at.isoformat()}
            data |= self._countdown(drop.claim_ends_at)
        await self._say(drop.merchant_id, drop.room_id, PushKind.COUPON_DROP, data)

    async def reserved(
        self, merchant_id: str, campaign_id: str, units: int, conn: Connection
    ) -> None:
        """Units of a campaign's sale held (positive) or given back (negative)."""
        await self._stock(
            merchant_id, await self._book.reserve(conn, merchant_id, campaign_id, units)
        )

    async def sold_out(self, merchant_id: str, campaign_id: str, conn: Connection) -> None:
        await self._stock(merchant_id, await self._book.sold_out(conn, merchant_id, campaign_id))

    async def _stock(self, merchant_id: str, campaign: RoomCampaign | None) -> None:
        if campaign is None:
            return
        data = {
            "campaign_id": campaign.campaign_id,
            "sku_id": campaign.sku_id,
            "left": campaign.left,
        }
        await self._say(merchant_id, campaign.room_id, PushKind.STOCK, data)

    async def _say(
        self, merchant_id: str, room_id: str, kind: PushKind, data: dict[str, object]
    ) -> None:
        await self._push.publish(merchant_id, [PushMessage(kind, room_id, self._clock(), data)])
