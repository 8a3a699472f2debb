"""The stock-levels read model: projected from inventory.events, read by operators."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from livecommerce.inventory.v1 import events_pb2
from services.kit.consumer import ConsumedEvent
from services.kit.db import Connection


@dataclass(frozen=True)
class StockLevel:
    merchant_id: str
    sku_id: str
    on_hand: int
    version: int


async def project_stock_received(event: ConsumedEvent, conn: Connection) -> None:
    """Upsert the level; an older version never overwrites a newer one."""
    message = event.payload(events_pb2.StockReceived)
    await conn.execute(
        "INSERT INTO stock_levels (merchant_id, sku_id, on_hand, version) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (merchant_id, sku_id) DO UPDATE SET on_hand = $3, version = $4,"
        " updated_at = now() WHERE stock_levels.version < $4",
        event.envelope.merchant_id,
        message.sku_id,
        message.on_hand_after,
        event.envelope.aggregate_version,
    )


class StockLevels:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, merchant_id: str, sku_id: str) -> StockLevel | None:
        row = await self._pool.fetchrow(
            "SELECT merchant_id, sku_id, on_hand, version FROM stock_levels"
            " WHERE merchant_id = $1 AND sku_id = $2",
            merchant_id,
            sku_id,
        )
        return StockLevel(**dict(row)) if row else None

    async def list(self, merchant_id: str, limit: int, offset: int) -> list[StockLevel]:
        rows = await self._pool.fetch(
            "SELECT merchant_id, sku_id, on_hand, version FROM stock_levels"
            " WHERE merchant_id = $1 ORDER BY sku_id LIMIT $2 OFFSET $3",
            merchant_id,
            limit,
            offset,
        )
        return [StockLevel(**dict(r)) for r in rows]
