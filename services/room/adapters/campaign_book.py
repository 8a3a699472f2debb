"""The campaigns selling in rooms and their reserved units, in Postgres (written by the
feed consumer in its inbox transaction, so each event counts once)."""

from __future__ import annotations

import asyncpg

from services.kit.db import Connection
from services.room.application.ports import RoomCampaign


def _campaign(row: asyncpg.Record) -> RoomCampaign:
    return RoomCampaign(
        campaign_id=row["campaign_id"],
        room_id=row["room_id"],
        sku_id=row["sku_id"],
        left=0 if row["sold_out"] else max(0, row["quantity"] - row["reserved"]),
    )


class PostgresCampaignBook:
    async def remember(
        self,
        conn: Connection,
        merchant_id: str,
        campaign_id: str,
        room_id: str,
        sku_id: str,
        quantity: int,
    ) -> None:
        await conn.execute(
            "INSERT INTO room_campaigns (merchant_id, campaign_id, room_id, sku_id, quantity)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            merchant_id,
            campaign_id,
            room_id,
            sku_id,
            quantity,
        )

    async def reserve(
        self, conn: Connection, merchant_id: str, campaign_id: str, units: int
    ) -> RoomCampaign | None:
        row = await conn.fetchrow(
            "UPDATE room_campaigns SET reserved = greatest(0, reserved + $3),"
            " sold_out = sold_out AND $3 >= 0"
            " WHERE merchant_id = $1 AND campaign_id = $2 RETURNING *",
            merchant_id,
            campaign_id,
            units,
        )
        return None if row is None else _campaign(row)

    async def sold_out(
        self, conn: Connection, merchant_id: str, campaign_id: str
    ) -> RoomCampaign | None:
        row = await conn.fetchrow(
            "UPDATE room_campaigns SET sold_out = true"
            " WHERE merchant_id = $1 AND campaign_id = $2 RETURNING *",
            merchant_id,
            campaign_id,
        )
        return None if row is None else _campaign(row)
