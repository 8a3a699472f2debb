"""Flash-sale campaign use cases: schedule (stock handed to inventory), start and stop now,
and the start and end their timers fire at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from services.kit.db import Connection
from services.kit.eventstore import utcnow
from services.promotion.adapters.streams import TransactionContext
from services.promotion.application.ports import InventorySales
from services.promotion.domain.campaigns import (
    Campaign,
    CampaignEnded,
    CampaignExistsError,
    CampaignInAnotherRoomError,
    CampaignOverlapError,
    CampaignScheduled,
    CampaignStarted,
    ScheduleCampaign,
)


class CampaignRecords(Protocol):
    """The durable record of campaigns (events, rows, start and end timers)."""

    def transaction(self) -> TransactionContext: ...

    async def find(self, merchant_id: str, campaign_id: str) -> Campaign | None: ...

    async def overlapping(
        self, merchant_id: str, event: CampaignScheduled, conn: Connection | None = None
    ) -> list[Campaign]: ...

    async def schedule(self, merchant_id: str, event: CampaignScheduled) -> Campaign:
        """Record it; CampaignOverlapError if an overlapping one was recorded meanwhile."""
        ...

    async def locked(self, conn: Connection, merchant_id: str, campaign_id: str) -> Campaign: ...

    async def record(
        self, conn: Connection, campaign: Campaign, event: CampaignStarted | CampaignEnded
    ) -> Campaign: ...


class Campaigns:
    def __init__(
        self,
        records: CampaignRecords,
        inventory: InventorySales,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._records = records
        self._inventory = inventory
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def schedule(self, command: ScheduleCampaign) -> Campaign:
        """Schedule a campaign: idempotent on its id and definition. The stock is allocated
        in inventory first, so a recorded campaign always has its sale; if an overlapping
        campaign won the race meanwhile, the sale is ended again."""
        event = command.event(self._clock())
        merchant_id = command.merchant_id
        existing = await self._records.find(merchant_id, event.campaign_id)
        if existing is not None:
            if not existing.same_definition(event):
                raise CampaignExistsError(
                    f"campaign {event.campaign_id} exists with another definition"
                )
            await self._inventory.schedule_sale(merchant_id, existing.scheduled)
            return existing
        if await self._records.overlapping(merchant_id, event):
            raise CampaignOverlapError(f"SKU {event.sku_id} has a campaign in that window already")
        await self._inventory.schedule_sale(merchant_id, event)
        try:
            return await self._records.schedule(merchant_id, event)
        except CampaignOverlapError:
            await self._inventory.end_sale(merchant_id, event.campaign_id)
            raise

    async def start(self, merchant_id: str, campaign_id: str, room_id: str = "") -> Campaign:
        """Start now (idempotent for a live campaign); ``room_id`` given: only a campaign of
        that room (CampaignInAnotherRoomError, nothing changed)."""
        async with self._records.transaction() as conn:
            return await self.start_in(conn, merchant_id, campaign_id, early=True, room_id=room_id)

    async def start_in(
        self,
        conn: Connection,
        merchant_id: str,
        campaign_id: str,
        *,
        early: bool,
        room_id: str = "",
    ) -> Campaign:
        """Record the start in ``conn``'s transaction; ``early`` False (the start timer):
        only once its time has come."""
        campaign = _in_room(await self._records.locked(conn, merchant_id, campaign_id), room_id)
        now = self._clock()
        if not early and now < campaign.scheduled.starts_at:
            return campaign
        started = campaign.start(now)
        if started is None:
            return campaign
        return await self._records.record(conn, campaign, started)

    async def stop(
        self, merchant_id: str, campaign_id: str, reason: str = "stopped", room_id: str = ""
    ) -> Campaign:
        """End now: inventory closes the sale first; then the end is recorded (idempotent).
        ``room_id`` given: only a campaign of that room, as for :meth:`start`."""
        async with self._records.transaction() as conn:
            return await self.stop_in(conn, merchant_id, campaign_id, reason, room_id=room_id)

    async def stop_in(
        self,
        conn: Connection,
        merchant_id: str,
        campaign_id: str,
        reason: str,
        *,
        room_id: str = "",
    ) -> Campaign:
        campaign = _in_room(await self._records.locked(conn, merchant_id, campaign_id), room_id)
        ended = campaign.end(self._clock(), reason)
        if ended is None:
            return campaign
        await self._inventory.end_sale(merchant_id, campaign_id)
        return await self._records.record(conn, campaign, ended)


def _in_room(campaign: Campaign, room_id: str) -> Campaign:
    """The campaign, if ``room_id`` is empty (not checked) or the room it sells in."""
    if room_id and campaign.scheduled.room_id != room_id:
        raise CampaignInAnotherRoomError(
            f"campaign {campaign.scheduled.campaign_id} sells in another room, not {room_id}"
        )
    return campaign
