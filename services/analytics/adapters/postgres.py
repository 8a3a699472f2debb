"""The derived state in Postgres: the writer the processor folds through (one transaction
with the inbox rows) and the queries the HTTP API reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.analytics.application.ports import ProjectionWriter, RecordedOrder
from services.analytics.domain import facts as f
from services.analytics.domain.counters import (
    RoomCounters,
    counters_from_dict,
    counters_to_dict,
)
from services.analytics.domain.review import Marker
from services.kit.db import Connection

INBOX_CONSUMER = "analytics"
"""The inbox's consumer name: one set of processed event ids, whatever topic they came on."""


def _lines_json(lines: Sequence[f.Line]) -> str:
    return json.dumps(
        [{"sku_id": x.sku_id, "quantity": x.quantity, "total_minor": x.total_minor} for x in lines]
    )


def _lines(raw: str) -> tuple[f.Line, ...]:
    return tuple(
        f.Line(str(x["sku_id"]), int(x["quantity"]), int(x["total_minor"])) for x in json.loads(raw)
    )


class PostgresWriter:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def claim(self, event_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self._conn.fetch(
            "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[])"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            INBOX_CONSUMER,
            list(event_ids),
        )
        return {row["event_id"] for row in rows}

    async def reject(self, event_id: UUID, event_type: str, reason: str, raw: bytes) -> None:
        await self.claim([event_id])
        await self._conn.execute(
            "INSERT INTO rejected_events (event_id, event_type, reason, envelope)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            event_id,
            event_type,
            reason[:2000],
            raw,
        )

    async def counters(self, merchant_id: str, room_id: str) -> RoomCounters:
        await self._conn.execute(
            "INSERT INTO rooms (merchant_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            merchant_id,
            room_id,
        )
        raw = await self._conn.fetchval(
            "SELECT counters FROM rooms WHERE merchant_id = $1 AND room_id = $2 FOR UPDATE",
            merchant_id,
            room_id,
        )
        return counters_from_dict(json.loads(raw))

    async def save_counters(
        self, merchant_id: str, room_id: str, counters: RoomCounters, applied: int
    ) -> None:
        await self._conn.execute(
            "UPDATE rooms SET counters = $3::jsonb, events = events + $4, updated_at = now()"
            " WHERE merchant_id = $1 AND room_id = $2",
            merchant_id,
            room_id,
            json.dumps(counters_to_dict(counters)),
            applied,
        )

    async def _room(self, merchant_id: str, room_id: str, assignments: str, *args: Any) -> None:
        await self._conn.execute(
            "INSERT INTO rooms (merchant_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            merchant_id,
            room_id,
        )
        await self._conn.execute(
            f"UPDATE rooms SET {assignments} WHERE merchant_id = $1 AND room_id = $2",  # noqa: S608
            merchant_id,
            room_id,
            *args,
        )

    async def room_scheduled(self, fact: f.RoomScheduled) -> None:
        await self._room(
            fact.merchant_id,
            fact.room_id,
            "host_id = $3, title = $4, scheduled_at = $5",
            fact.host_id,
            fact.title,
            fact.at,
        )

    async def room_started(self, fact: f.RoomStarted) -> None:
        await self._room(
            fact.merchant_id,
            fact.room_id,
            "host_id = CASE WHEN $3 = '' THEN host_id ELSE $3 END, started_at = $4",
            fact.host_id,
            fact.at,
        )

    async def room_ended(self, fact: f.RoomEnded) -> None:
        await self._room(fact.merchant_id, fact.room_id, "ended_at = $3", fact.at)

    async def open_visit(self, fact: f.ViewerJoined) -> bool:
        opened = await self._conn.fetchval(
            "INSERT INTO visits (merchant_id, room_id, visit_id, viewer_id, channel, entry,"
            " share_code, joined_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (merchant_id, room_id, visit_id) DO UPDATE SET"
            " channel = EXCLUDED.channel, entry = EXCLUDED.entry,"
            " share_code = EXCLUDED.share_code, joined_at = EXCLUDED.joined_at"
            " WHERE visits.joined_at IS NULL RETURNING true",
            fact.merchant_id,
            fact.room_id,
            fact.visit_id,
            fact.viewer_id,
            fact.channel,
            fact.entry,
            fact.share_code,
            fact.at,
        )
        return bool(opened)

    async def close_visit(self, fact: f.ViewerLeft) -> bool:
        closed = await self._conn.fetchval(
            "INSERT INTO visits (merchant_id, room_id, visit_id, viewer_id, left_at,"
            " watched_seconds) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (merchant_id, room_id, visit_id) DO UPDATE SET"
            " left_at = EXCLUDED.left_at, watched_seconds = EXCLUDED.watched_seconds"
            " WHERE visits.left_at IS NULL RETURNING true",
            fact.merchant_id,
            fact.room_id,
            fact.visit_id,
            fact.viewer_id,
            fact.at,
            fact.watched_seconds,
        )
        return bool(closed)

    async def add_presence(self, merchant_id: str, room_id: str, at: datetime, delta: int) -> None:
        await self._conn.execute(
            "INSERT INTO presence_deltas (merchant_id, room_id, at, delta)"
            " VALUES ($1, $2, date_trunc('second', $3::timestamptz), $4)"
            " ON CONFLICT (merchant_id, room_id, at)"
            " DO UPDATE SET delta = presence_deltas.delta + EXCLUDED.delta",
            merchant_id,
            room_id,
            at,
            delta,
        )

    async def _insert_new(self, table: str, merchant_id: str, room_id: str, viewer: str) -> bool:
        inserted = await self._conn.fetchval(
            f"INSERT INTO {table} (merchant_id, room_id, viewer_id) VALUES ($1, $2, $3)"  # noqa: S608
            " ON CONFLICT DO NOTHING RETURNING true",
            merchant_id,
            room_id,
            viewer,
        )
        return bool(inserted)

    async def add_viewer(self, merchant_id: str, room_id: str, viewer_id: str) -> bool:
        return await self._insert_new("room_viewers", merchant_id, room_id, viewer_id)

    async def add_subscriber(self, fact: f.ReminderSent | f.ReminderSubscribed) -> bool:
        return await self._insert_new("subscribers", fact.merchant_id, fact.room_id, fact.viewer_id)

    async def pin(self, fact: f.ProductPinned) -> None:
        await self._conn.execute(
            "UPDATE pins SET unpinned_at = $3 WHERE merchant_id = $1 AND room_id = $2"
            " AND unpinned_at IS NULL AND pinned_at <= $3",
            fact.merchant_id,
            fact.room_id,
            fact.at,
        )
        await self._conn.execute(
            "INSERT INTO pins (merchant_id, room_id, sku_id, pinned_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            fact.merchant_id,
            fact.room_id,
            fact.sku_id,
            fact.at,
        )

    async def unpin(self, fact: f.ProductUnpinned) -> None:
        await self._conn.execute(
            "UPDATE pins SET unpinned_at = $4 WHERE merchant_id = $1 AND room_id = $2"
            " AND sku_id = $3 AND unpinned_at IS NULL AND pinned_at <= $4",
            fact.merchant_id,
            fact.room_id,
            fact.sku_id,
            fact.at,
        )

    async def add_marker(self, merchant_id: str, room_id: str, marker: Marker) -> None:
        await self._conn.execute(
            "INSERT INTO markers (merchant_id, room_id, kind, ref, at, label)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            merchant_id,
            room_id,
            marker.kind,
            marker.ref,
            marker.at,
            marker.label,
        )

    async def record_order(self, fact: f.OrderPlaced) -> None:
        await self._conn.execute(
            "INSERT INTO orders (merchant_id, order_id, room_id, buyer_id, channel, share_code,"
            " lines, total_minor, placed_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)"
            " ON CONFLICT DO NOTHING",
            fact.merchant_id,
            fact.order_id,
            fact.room_id,
            fact.buyer_id,
            fact.channel,
            fact.share_code,
            _lines_json(fact.lines),
            fact.total_minor,
            fact.at,
        )

    async def recorded_order(self, merchant_id: str, order_id: str) -> RecordedOrder | None:
        row = await self._conn.fetchrow(
            "SELECT room_id, channel, lines FROM orders WHERE merchant_id = $1 AND order_id = $2",
            merchant_id,
            order_id,
        )
        if row is None:
            return None
        return RecordedOrder(row["room_id"], row["channel"], _lines(row["lines"]))

    async def order_paid(self, fact: f.OrderPaid) -> bool:
        paid = await self._conn.fetchval(
            "UPDATE orders SET paid_at = $3, paid_minor = $4"
            " WHERE merchant_id = $1 AND order_id = $2 AND paid_at IS NULL RETURNING true",
            fact.merchant_id,
            fact.order_id,
            fact.at,
            fact.amount_minor,
        )
        return bool(paid)

    async def order_cancelled(self, fact: f.OrderCancelled) -> None:
        await self._conn.execute(
            "UPDATE orders SET cancelled_at = $3 WHERE merchant_id = $1 AND order_id = $2",
            fact.merchant_id,
            fact.order_id,
            fact.at,
        )

    async def order_refunded(self, fact: f.OrderRefunded) -> None:
        await self._conn.execute(
            "UPDATE orders SET refunded_minor = refunded_minor + $3, refunds = refunds + 1"
            " WHERE merchant_id = $1 AND order_id = $2",
            fact.merchant_id,
            fact.order_id,
            fact.amount_minor,
        )

    async def stock_level(self, fact: f.StockLevel) -> None:
        await self._conn.execute(
            "INSERT INTO skus (merchant_id, sku_id, on_hand, version) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (merchant_id, sku_id) DO UPDATE SET on_hand = EXCLUDED.on_hand,"
            " version = EXCLUDED.version WHERE skus.version < EXCLUDED.version",
            fact.merchant_id,
            fact.sku_id,
            fact.on_hand,
            fact.version,
        )

    async def _sale(self, merchant_id: str, sale_id: str, assignments: str, *args: Any) -> None:
        await self._conn.execute(
            "INSERT INTO sales (merchant_id, sale_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            merchant_id,
            sale_id,
        )
        await self._conn.execute(
            f"UPDATE sales SET {assignments} WHERE merchant_id = $1 AND sale_id = $2",  # noqa: S608
            merchant_id,
            sale_id,
            *args,
        )

    async def sale(
        self, fact: f.SaleScheduled | f.SaleReserved | f.SaleReleased | f.SaleEnded
    ) -> None:
        m, sale = fact.merchant_id, fact.sale_id
        match fact:
            case f.SaleScheduled():
                await self._sale(
                    m, sale, "sku_id = $3, allocated = $4", fact.sku_id, fact.allocated
                )
            case f.SaleReserved():
                await self._sale(
                    m, sale, "sku_id = $3, reserved = reserved + $4", fact.sku_id, fact.quantity
                )
            case f.SaleReleased():
                if not fact.returned_to_sku:
                    await self._sale(
                        m, sale, "sku_id = $3, released = released + $4", fact.sku_id, fact.quantity
                    )
            case f.SaleEnded():
                await self._sale(m, sale, "ended = true")

    async def campaign(self, fact: f.CampaignScheduled) -> None:
        await self._sale(
            fact.merchant_id,
            fact.campaign_id,
            "sku_id = $3, room_id = $4",
            fact.sku_id,
            fact.room_id,
        )

    async def attribution(
        self, fact: f.ViewAttributed | f.InviteeBound | f.OrderAttributed
    ) -> None:
        match fact:
            case f.ViewAttributed():
                await self._conn.execute(
                    "INSERT INTO view_attributions (merchant_id, room_id, viewer_id, sharer_id,"
                    " joined_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    fact.merchant_id,
                    fact.room_id,
                    fact.viewer_id,
                    fact.sharer_id,
                    fact.at,
                )
            case f.InviteeBound():
                await self._conn.execute(
                    "INSERT INTO inviters (merchant_id, invitee_id, inviter_id)"
                    " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    fact.merchant_id,
                    fact.invitee_id,
                    fact.inviter_id,
                )
            case f.OrderAttributed():
                await self._conn.execute(
                    "INSERT INTO order_attributions (merchant_id, order_id, room_id, sharer_id)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    fact.merchant_id,
                    fact.order_id,
                    fact.room_id,
                    fact.sharer_id,
                )

    async def categories(self, fact: f.CategoriesConfigured) -> None:
        await self._conn.executemany(
            "INSERT INTO sku_categories (merchant_id, sku_id, category, version)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (merchant_id, sku_id) DO UPDATE SET"
            " category = EXCLUDED.category, version = EXCLUDED.version"
            " WHERE sku_categories.version <= EXCLUDED.version",
            [(fact.merchant_id, sku, cat, fact.version) for sku, cat in fact.categories.items()],
        )


class PostgresProjections:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ProjectionWriter]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresWriter(conn)
