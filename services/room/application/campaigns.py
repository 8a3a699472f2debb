"""The host launches and stops flash-sale campaigns from the room (promotion runs them);
viewers see the change at once."""

from __future__ import annotations

from services.kit.identity import Caller
from services.kit.tenancy import validate_id
from services.room.application.ports import (
    Campaigns,
    CampaignView,
    Clock,
    Push,
    PushKind,
    PushMessage,
    RoomRepository,
)
from services.room.application.rooms import ensure_can_run
from services.room.domain.room import RoomStateError, validate_room_id


class RoomCampaigns:
    def __init__(
        self, rooms: RoomRepository, campaigns: Campaigns, push: Push, *, clock: Clock
    ) -> None:
        self._rooms = rooms
        self._campaigns = campaigns
        self._push = push
        self._clock = clock

    async def start(
        self, caller: Caller, merchant_id: str, room_id: str, campaign_id: str
    ) -> CampaignView:
        """Only in a live room, by its host or operators."""
        room = await self._rooms.load(merchant_id, validate_room_id(room_id))
        ensure_can_run(caller, room)
        if not room.is_live:
            raise RoomStateError(f"room {room_id} is {room.state.value}: campaigns need it live")
        campaign = await self._campaigns.start(
            merchant_id, validate_id(campaign_id, "campaign"), room_id
        )
        await self._announce(merchant_id, room_id, campaign, PushKind.CAMPAIGN_STARTED)
        return campaign

    async def stop(
        self, caller: Caller, merchant_id: str, room_id: str, campaign_id: str
    ) -> CampaignView:
        room = await self._rooms.load(merchant_id, validate_room_id(room_id))
        ensure_can_run(caller, room)
        campaign = await self._campaigns.stop(
            merchant_id, validate_id(campaign_id, "campaign"), room_id
        )
        await self._announce(merchant_id, room_id, campaign, PushKind.CAMPAIGN_ENDED)
        return campaign

    async def _announce(
        self, merchant_id: str, room_id: str, campaign: CampaignView, kind: PushKind
    ) -> None:
        """To the room the campaign sells in (promotion refused any other)."""
        now = self._clock()
        data: dict[str, object] = {
            "campaign_id": campaign.campaign_id,
            "sku_id": campaign.sku_id,
            "state": campaign.state,
        }
        if campaign.ends_at is not None:
            data["ends_at"] = campaign.ends_at.isoformat()
            data["countdown_seconds"] = max(0, int((campaign.ends_at - now).total_seconds()))
        await self._push.publish(merchant_id, [PushMessage(kind, room_id, now, data)])
