"""Flash-sale campaigns in Postgres: events, rows and timers in one transaction, under the
campaign row's lock (or, when scheduling, a lock on the SKU so that two overlapping
campaigns cannot both be recorded)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.kit.db import Connection
from services.kit.eventstore import EventStore
from services.kit.timers import schedule_timer
from services.promotion.adapters import streams
from services.promotion.domain.campaigns import (
    Campaign,
    CampaignEnded,
    CampaignNotFoundError,
    CampaignOverlapError,
    CampaignScheduled,
    CampaignStarted,
)

CAMPAIGN_START_TIMER = "promotion-campaign-start"
CAMPAIGN_END_TIMER = "promotion-campaign-end"

_COLUMNS = """merchant_id, campaign_id, sku_id, room_id, flash_price_minor, currency, quantity,
    starts_at, ends_at, per_user_limit, stock_opens_at, hold_ttl_seconds, started_at, ended,
    version"""


def _campaign_of(row: asyncpg.Record) -> Campaign:
    return Campaign(
        merchant_id=row["merchant_id"],
        scheduled=CampaignScheduled(
            campaign_id=row["campaign_id"],
            sku_id=row["sku_id"],
            room_id=row["room_id"],
            flash_price_minor=row["flash_price_minor"],
            currency=row["currency"],
            quantity=row["quantity"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            per_user_limit=row["per_user_limit"],
            stock_opens_at=row["stock_opens_at"],
            hold_ttl_seconds=row["hold_ttl_seconds"],
        ),
        started_at=row["started_at"],
        ended=row["ended"],
        version=row["version"],
    )


class CampaignBook:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self._pool = pool
        self._store = store

    async def find(self, merchant_id: str, campaign_id: str) -> Campaign | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM campaigns WHERE merchant_id = $1 AND campaign_id = $2",  # noqa: S608
            merchant_id,
            campaign_id,
        )
        return None if row is None else _campaign_of(row)

    async def campaign(self, merchant_id: str, campaign_id: str) -> Campaign:
        found = await self.find(merchant_id, campaign_id)
        if found is None:
            raise CampaignNotFoundError(f"campaign {campaign_id} not found")
        return found

    async def list_campaigns(self, merchant_id: str, room_id: str | None = None) -> list[Campaign]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM campaigns WHERE merchant_id = $1"  # noqa: S608
            " AND ($2::text IS NULL OR room_id = $2) ORDER BY starts_at, campaign_id",
            merchant_id,
            room_id,
        )
        return [_campaign_of(r) for r in rows]

    async def overlapping(
        self, merchant_id: str, event: CampaignScheduled, conn: Connection | None = None
    ) -> list[Campaign]:
        """Campaigns of the SKU that have not ended and whose windows overlap ``event``'s."""
        query = (
            f"SELECT {_COLUMNS} FROM campaigns WHERE merchant_id = $1 AND sku_id = $2"  # noqa: S608
            " AND NOT ended AND starts_at < $4 AND $3 < ends_at AND campaign_id <> $5"
        )
        args = (merchant_id, event.sku_id, event.starts_at, event.ends_at, event.campaign_id)
        rows = await (conn or self._pool).fetch(query, *args)
        return [_campaign_of(r) for r in rows]

    async def live_in_room(
        self, merchant_id: str, room_id: str, sku_ids: Sequence[str], at: datetime
    ) -> dict[str, Campaign]:
        """The campaign live at ``at`` in the room for each SKU that has one."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM campaigns WHERE merchant_id = $1 AND room_id = $2"  # noqa: S608
            " AND sku_id = ANY($3::text[]) AND NOT ended AND $4 < ends_at"
            " AND LEAST(starts_at, COALESCE(started_at, starts_at)) <= $4",
            merchant_id,
            room_id,
            list(sku_ids),
            at,
        )
        return {r["sku_id"]: _campaign_of(r) for r in rows}

    async def schedule(self, merchant_id: str, event: CampaignScheduled) -> Campaign:
        """Record a new campaign with its start and end timers. Under a lock on the SKU, an
        overlapping campaign recorded meanwhile is CampaignOverlapError."""
        async with streams.transaction(self._pool) as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)",
                zlib.crc32(f"campaign-sku:{merchant_id}:{event.sku_id}".encode()),
            )
            if await self.overlapping(merchant_id, event, conn):
                raise CampaignOverlapError(
                    f"SKU {event.sku_id} has a campaign in that window already"
                )
            await self._store.append(
                [streams.append(streams.CAMPAIGN, merchant_id, event.campaign_id, 0, [event])],
                conn=conn,
            )
            await conn.execute(
                "INSERT INTO campaigns (merchant_id, campaign_id, sku_id, room_id,"
                " flash_price_minor, currency, quantity, starts_at, ends_at, per_user_limit,"
                " stock_opens_at, hold_ttl_seconds, version) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                " $8, $9, $10, $11, $12, 1)",
                merchant_id,
                event.campaign_id,
                event.sku_id,
                event.room_id,
                event.flash_price_minor,
                event.currency,
                event.quantity,
                event.starts_at,
                event.ends_at,
                event.per_user_limit,
                event.stock_opens_at,
                event.hold_ttl_seconds,
            )
            key = f"{merchant_id}:{event.campaign_id}"
            payload = {"campaign_id": event.campaign_id}
            await schedule_timer(
                conn,
                kind=CAMPAIGN_START_TIMER,
                key=key,
                due_at=event.starts_at,
                merchant_id=merchant_id,
                payload=payload,
            )
            await schedule_timer(
                conn,
                kind=CAMPAIGN_END_TIMER,
                key=key,
                due_at=event.ends_at,
                merchant_id=merchant_id,
                payload=payload,
            )
        return Campaign(merchant_id, event)

    async def locked(self, conn: Connection, merchant_id: str, campaign_id: str) -> Campaign:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM campaigns WHERE merchant_id = $1 AND campaign_id = $2"  # noqa: S608
            " FOR UPDATE",
            merchant_id,
            campaign_id,
        )
        if row is None:
            raise CampaignNotFoundError(f"campaign {campaign_id} not found")
        return _campaign_of(row)

    async def record(
        self, conn: Connection, campaign: Campaign, event: CampaignStarted | CampaignEnded
    ) -> Campaign:
        await self._store.append(
            [
                streams.append(
                    streams.CAMPAIGN,
                    campaign.merchant_id,
                    campaign.campaign_id,
                    campaign.version,
                    [event],
                )
            ],
            conn=conn,
        )
        after = campaign.after(event)
        await conn.execute(
            "UPDATE campaigns SET started_at = $3, ended = $4, version = $5"
            " WHERE merchant_id = $1 AND campaign_id = $2",
            campaign.merchant_id,
            campaign.campaign_id,
            after.started_at,
            after.ended,
            after.version,
        )
        return after

    def transaction(self) -> streams.TransactionContext:
        return streams.transaction(self._pool)
