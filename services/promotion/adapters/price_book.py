"""The price list and price promotions in Postgres: events and the rows they imply, in one
transaction, under the row's lock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.kit.eventstore import EventStore
from services.promotion.adapters import streams
from services.promotion.domain.money import Money
from services.promotion.domain.prices import (
    ListPriceSet,
    PriceNotFoundError,
    PricePromotion,
    PricePromotionRemoved,
    RoomSpecialPriceSet,
    StoreDiscountSet,
)

_PROMOTION_COLUMNS = """merchant_id, promotion_id, kind, sku_id, room_id, amount_minor, currency,
    percent_bps, sku_ids, starts_at, ends_at, removed, version"""


def _promotion_of(row: asyncpg.Record) -> PricePromotion:
    offer: RoomSpecialPriceSet | StoreDiscountSet
    if row["kind"] == "room_special":
        offer = RoomSpecialPriceSet(
            promotion_id=row["promotion_id"],
            sku_id=row["sku_id"],
            room_id=row["room_id"],
            amount_minor=row["amount_minor"],
            currency=row["currency"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
        )
    else:
        offer = StoreDiscountSet(
            promotion_id=row["promotion_id"],
            percent_bps=row["percent_bps"],
            sku_ids=tuple(row["sku_ids"]),
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
        )
    return PricePromotion(
        merchant_id=row["merchant_id"],
        promotion_id=row["promotion_id"],
        offer=offer,
        removed=row["removed"],
        version=row["version"],
    )


class PriceBook:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self._pool = pool
        self._store = store

    async def set_list_price(self, merchant_id: str, event: ListPriceSet) -> int:
        async with streams.transaction(self._pool) as conn:
            version = await conn.fetchval(
                "SELECT version FROM list_prices WHERE merchant_id = $1 AND sku_id = $2 FOR UPDATE",
                merchant_id,
                event.sku_id,
            )
            version = int(version or 0)
            await self._store.append(
                [streams.append(streams.PRICE, merchant_id, event.sku_id, version, [event])],
                conn=conn,
            )
            await conn.execute(
                "INSERT INTO list_prices (merchant_id, sku_id, amount_minor, currency, version)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, sku_id) DO UPDATE"
                " SET amount_minor = $3, currency = $4, version = $5",
                merchant_id,
                event.sku_id,
                event.amount_minor,
                event.currency,
                version + 1,
            )
        return version + 1

    async def list_prices(self, merchant_id: str, sku_ids: Sequence[str]) -> dict[str, Money]:
        rows = await self._pool.fetch(
            "SELECT sku_id, amount_minor, currency FROM list_prices"
            " WHERE merchant_id = $1 AND sku_id = ANY($2::text[])",
            merchant_id,
            list(sku_ids),
        )
        return {r["sku_id"]: Money(r["amount_minor"], r["currency"]) for r in rows}

    async def list_price(self, merchant_id: str, sku_id: str) -> Money:
        found = await self.list_prices(merchant_id, [sku_id])
        if sku_id not in found:
            raise PriceNotFoundError(f"SKU {sku_id} has no list price")
        return found[sku_id]

    async def promotion(self, merchant_id: str, promotion_id: str) -> PricePromotion:
        row = await self._pool.fetchrow(
            f"SELECT {_PROMOTION_COLUMNS} FROM price_promotions"  # noqa: S608
            " WHERE merchant_id = $1 AND promotion_id = $2",
            merchant_id,
            promotion_id,
        )
        if row is None:
            raise PriceNotFoundError(f"price promotion {promotion_id} not found")
        return _promotion_of(row)

    async def set_promotion(
        self, merchant_id: str, event: RoomSpecialPriceSet | StoreDiscountSet
    ) -> PricePromotion:
        """Set (or replace) a price promotion; a promotion id of another kind is refused."""
        async with streams.transaction(self._pool) as conn:
            row = await conn.fetchrow(
                f"SELECT {_PROMOTION_COLUMNS} FROM price_promotions"  # noqa: S608
                " WHERE merchant_id = $1 AND promotion_id = $2 FOR UPDATE",
                merchant_id,
                event.promotion_id,
            )
            version = 0
            if row is not None:
                existing = _promotion_of(row)
                existing.check_replaceable_by(event)
                version = existing.version
            await self._store.append(
                [
                    streams.append(
                        streams.PRICE_PROMOTION, merchant_id, event.promotion_id, version, [event]
                    )
                ],
                conn=conn,
            )
            special = isinstance(event, RoomSpecialPriceSet)
            await conn.execute(
                "INSERT INTO price_promotions (merchant_id, promotion_id, kind, sku_id, room_id,"
                " amount_minor, currency, percent_bps, sku_ids, starts_at, ends_at, removed,"
                " version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, false, $12)"
                " ON CONFLICT (merchant_id, promotion_id) DO UPDATE SET sku_id = $4,"
                " room_id = $5, amount_minor = $6, currency = $7, percent_bps = $8,"
                " sku_ids = $9, starts_at = $10, ends_at = $11, removed = false, version = $12",
                merchant_id,
                event.promotion_id,
                "room_special" if special else "store_discount",
                event.sku_id if isinstance(event, RoomSpecialPriceSet) else None,
                event.room_id if isinstance(event, RoomSpecialPriceSet) else "",
                event.amount_minor if isinstance(event, RoomSpecialPriceSet) else None,
                event.currency if isinstance(event, RoomSpecialPriceSet) else None,
                event.percent_bps if isinstance(event, StoreDiscountSet) else None,
                list(event.sku_ids) if isinstance(event, StoreDiscountSet) else [],
                event.starts_at,
                event.ends_at,
                version + 1,
            )
        return await self.promotion(merchant_id, event.promotion_id)

    async def remove_promotion(self, merchant_id: str, promotion_id: str) -> PricePromotion:
        """Remove a price promotion (idempotent)."""
        async with streams.transaction(self._pool) as conn:
            row = await conn.fetchrow(
                f"SELECT {_PROMOTION_COLUMNS} FROM price_promotions"  # noqa: S608
                " WHERE merchant_id = $1 AND promotion_id = $2 FOR UPDATE",
                merchant_id,
                promotion_id,
            )
            if row is None:
                raise PriceNotFoundError(f"price promotion {promotion_id} not found")
            if not row["removed"]:
                await self._store.append(
                    [
                        streams.append(
                            streams.PRICE_PROMOTION,
                            merchant_id,
                            promotion_id,
                            row["version"],
                            [PricePromotionRemoved(promotion_id)],
                        )
                    ],
                    conn=conn,
                )
                await conn.execute(
                    "UPDATE price_promotions SET removed = true, version = version + 1"
                    " WHERE merchant_id = $1 AND promotion_id = $2",
                    merchant_id,
                    promotion_id,
                )
        return await self.promotion(merchant_id, promotion_id)

    async def live_promotions(self, merchant_id: str, at: datetime) -> list[PricePromotion]:
        """The merchant's price promotions live at ``at``, by promotion id."""
        rows = await self._pool.fetch(
            f"SELECT {_PROMOTION_COLUMNS} FROM price_promotions"  # noqa: S608
            " WHERE merchant_id = $1 AND NOT removed"
            " AND (starts_at IS NULL OR starts_at <= $2) AND (ends_at IS NULL OR $2 < ends_at)"
            " ORDER BY promotion_id",
            merchant_id,
            at,
        )
        return [_promotion_of(r) for r in rows]

    async def all_promotions(
        self, merchant_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[PricePromotion]:
        """The merchant's price promotions by id; ``limit`` None: all of them."""
        rows = await self._pool.fetch(
            f"SELECT {_PROMOTION_COLUMNS} FROM price_promotions"  # noqa: S608
            " WHERE merchant_id = $1 ORDER BY promotion_id LIMIT $2 OFFSET $3",
            merchant_id,
            limit,
            offset,
        )
        return [_promotion_of(r) for r in rows]
