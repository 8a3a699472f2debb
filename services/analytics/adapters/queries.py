"""Reads for the HTTP API. Each answer is read in one repeatable-read, read-only transaction,
so its figures are from one moment of the derived state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from services.analytics.domain import presence
from services.analytics.domain.counters import counters_from_dict
from services.analytics.domain.fans import FanFigures
from services.analytics.domain.hosts import HostStream
from services.analytics.domain.review import Marker, RoomSnapshot, SharerFigures
from services.kit.db import Connection

_PIN_VIEWERS = """
SELECT count(DISTINCT v.viewer_id)
FROM visits v
JOIN pins p ON p.merchant_id = v.merchant_id AND p.room_id = v.room_id
WHERE v.merchant_id = $1 AND v.room_id = $2 AND v.joined_at IS NOT NULL
  AND v.joined_at < coalesce(p.unpinned_at, $3::timestamptz, 'infinity')
  AND coalesce(v.left_at, 'infinity') > p.pinned_at
"""

_BUYERS = """
SELECT count(DISTINCT buyer_id) AS buyers,
       count(DISTINCT buyer_id) FILTER (WHERE paid_at IS NOT NULL) AS paying,
       count(DISTINCT buyer_id) FILTER (
         WHERE paid_at IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM orders earlier
           WHERE earlier.merchant_id = o.merchant_id AND earlier.buyer_id = o.buyer_id
             AND earlier.room_id <> o.room_id AND earlier.paid_at IS NOT NULL
             AND earlier.paid_at < $3::timestamptz)) AS new_buyers
FROM orders o WHERE o.merchant_id = $1 AND o.room_id = $2
"""

_SHARERS = """
WITH viewers AS (
  SELECT sharer_id, count(DISTINCT viewer_id) AS viewers FROM view_attributions
  WHERE merchant_id = $1 AND room_id = $2 GROUP BY sharer_id),
sold AS (
  SELECT a.sharer_id, count(o.order_id) AS orders,
         count(o.order_id) FILTER (WHERE o.paid_at IS NOT NULL) AS paid_orders,
         coalesce(sum(o.paid_minor), 0) AS gmv_paid
  FROM order_attributions a
  JOIN orders o ON o.merchant_id = a.merchant_id AND o.order_id = a.order_id
  WHERE a.merchant_id = $1 AND o.room_id = $2 GROUP BY a.sharer_id)
SELECT coalesce(v.sharer_id, s.sharer_id) AS sharer_id, coalesce(v.viewers, 0) AS viewers,
       coalesce(s.orders, 0) AS orders, coalesce(s.paid_orders, 0) AS paid_orders,
       coalesce(s.gmv_paid, 0) AS gmv_paid
FROM viewers v FULL JOIN sold s ON s.sharer_id = v.sharer_id
"""

_STOCK = """
SELECT k.sku_id,
       coalesce((SELECT on_hand FROM skus WHERE merchant_id = $1 AND sku_id = k.sku_id), 0)
       + coalesce((SELECT sum(allocated - reserved + released) FROM sales
                   WHERE merchant_id = $1 AND sku_id = k.sku_id AND NOT ended), 0) AS left_
FROM unnest($2::text[]) AS k(sku_id)
WHERE EXISTS (SELECT 1 FROM skus WHERE merchant_id = $1 AND sku_id = k.sku_id)
   OR EXISTS (SELECT 1 FROM sales WHERE merchant_id = $1 AND sku_id = k.sku_id)
"""

_FANS = """
SELECT u.user_id, v.*, o.*, cats.categories, sharer.sharer_id,
       fv.channel AS entry_channel, fv.entry AS entry
FROM unnest($2::text[]) AS u(user_id)
CROSS JOIN LATERAL (
  SELECT min(joined_at) AS first_seen, max(coalesce(left_at, joined_at)) AS last_seen,
         count(DISTINCT room_id) AS streams, coalesce(sum(watched_seconds), 0) AS watched
  FROM visits WHERE merchant_id = $1 AND viewer_id = u.user_id) v
CROSS JOIN LATERAL (
  SELECT min(placed_at) AS first_order,
         count(*) FILTER (WHERE paid_at IS NOT NULL) AS orders,
         coalesce(sum(paid_minor - refunded_minor) FILTER (WHERE paid_at IS NOT NULL), 0) AS spend,
         max(paid_at) AS last_purchase
  FROM orders WHERE merchant_id = $1 AND buyer_id = u.user_id) o
CROSS JOIN LATERAL (
  SELECT coalesce(array_agg(DISTINCT c.category ORDER BY c.category), '{}') AS categories
  FROM orders paid, jsonb_array_elements(paid.lines) AS line
  JOIN sku_categories c ON c.merchant_id = $1 AND c.sku_id = line->>'sku_id'
  WHERE paid.merchant_id = $1 AND paid.buyer_id = u.user_id AND paid.paid_at IS NOT NULL) cats
CROSS JOIN LATERAL (
  SELECT coalesce(
    (SELECT inviter_id FROM inviters WHERE merchant_id = $1 AND invitee_id = u.user_id),
    (SELECT sharer_id FROM view_attributions WHERE merchant_id = $1 AND viewer_id = u.user_id
     ORDER BY joined_at, sharer_id LIMIT 1), '') AS sharer_id) sharer
LEFT JOIN LATERAL (
  SELECT channel, entry FROM visits WHERE merchant_id = $1 AND viewer_id = u.user_id
  AND joined_at IS NOT NULL ORDER BY joined_at, visit_id LIMIT 1) fv ON true
ORDER BY u.user_id
"""


def _aware(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class PostgresQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield conn

    async def room_version(self, merchant_id: str, room_id: str) -> int | None:
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT events FROM rooms WHERE merchant_id = $1 AND room_id = $2",
                merchant_id,
                room_id,
            )
        return None if value is None else int(value)

    async def room_snapshot(self, merchant_id: str, room_id: str) -> RoomSnapshot | None:
        async with self._read() as conn:
            return await self._snapshot(conn, merchant_id, room_id)

    async def _snapshot(
        self, conn: Connection, merchant_id: str, room_id: str
    ) -> RoomSnapshot | None:
        room = await conn.fetchrow(
            "SELECT host_id, title, started_at, ended_at, counters FROM rooms"
            " WHERE merchant_id = $1 AND room_id = $2",
            merchant_id,
            room_id,
        )
        if room is None:
            return None
        counters = counters_from_dict(json.loads(room["counters"]))
        deltas = await self._deltas(conn, merchant_id, room_id)
        markers = await conn.fetch(
            "SELECT kind, ref, at, label FROM markers WHERE merchant_id = $1 AND room_id = $2",
            merchant_id,
            room_id,
        )
        pin_viewers = await conn.fetchval(_PIN_VIEWERS, merchant_id, room_id, room["ended_at"])
        buyers = await conn.fetchrow(
            _BUYERS, merchant_id, room_id, room["started_at"] or datetime.now(UTC)
        )
        assert buyers is not None  # an aggregate without GROUP BY always has one row
        sharers = await conn.fetch(_SHARERS, merchant_id, room_id)
        skus = set(counters.products) | {
            row["sku_id"]
            for row in await conn.fetch(
                "SELECT sku_id FROM sales WHERE merchant_id = $1 AND room_id = $2",
                merchant_id,
                room_id,
            )
        }
        stock = await conn.fetch(_STOCK, merchant_id, sorted(skus))
        return RoomSnapshot(
            merchant_id=merchant_id,
            room_id=room_id,
            host_id=room["host_id"],
            title=room["title"],
            started_at=_aware(room["started_at"]),
            ended_at=_aware(room["ended_at"]),
            counters=counters,
            presence=deltas,
            markers=[
                Marker(row["kind"], row["ref"], row["at"].astimezone(UTC), row["label"])
                for row in markers
            ],
            pin_viewers=int(pin_viewers),
            buyers=int(buyers["buyers"]),
            paying_buyers=int(buyers["paying"]),
            new_buyers=int(buyers["new_buyers"]),
            sharers=[
                SharerFigures(
                    row["sharer_id"],
                    int(row["viewers"]),
                    int(row["orders"]),
                    int(row["paid_orders"]),
                    int(row["gmv_paid"]),
                )
                for row in sharers
            ],
            stock_left={row["sku_id"]: int(row["left_"]) for row in stock},
        )

    async def _deltas(
        self, conn: Connection, merchant_id: str, room_id: str
    ) -> list[presence.Delta]:
        rows = await conn.fetch(
            "SELECT at, delta FROM presence_deltas WHERE merchant_id = $1 AND room_id = $2"
            " ORDER BY at",
            merchant_id,
            room_id,
        )
        return [(row["at"].astimezone(UTC), int(row["delta"])) for row in rows]

    async def _fans(
        self, conn: Connection, merchant_id: str, user_ids: list[str]
    ) -> list[FanFigures]:
        """The figures of each user seen (a visit or an order) with the merchant."""
        found = []
        for row in await conn.fetch(_FANS, merchant_id, user_ids):
            seen = [m for m in (row["first_seen"], row["first_order"]) if m is not None]
            if not seen:
                continue
            found.append(
                FanFigures(
                    merchant_id=merchant_id,
                    user_id=row["user_id"],
                    first_seen_at=_aware(min(seen)),
                    last_seen_at=_aware(row["last_seen"]),
                    streams_watched=int(row["streams"]),
                    watch_seconds=int(row["watched"]),
                    orders=int(row["orders"]),
                    spend_minor=int(row["spend"]),
                    last_purchase_at=_aware(row["last_purchase"]),
                    categories=tuple(row["categories"]),
                    entry_channel=row["entry_channel"] or "",
                    entry=row["entry"] or "",
                    sharer_id=row["sharer_id"],
                )
            )
        return found

    async def fan(self, merchant_id: str, user_id: str) -> FanFigures | None:
        async with self._read() as conn:
            found = await self._fans(conn, merchant_id, [user_id])
        return found[0] if found else None

    async def room_audience(
        self, merchant_id: str, room_id: str
    ) -> tuple[list[FanFigures], int] | None:
        async with self._read() as conn:
            exists = await conn.fetchval(
                "SELECT true FROM rooms WHERE merchant_id = $1 AND room_id = $2",
                merchant_id,
                room_id,
            )
            if not exists:
                return None
            viewers = await conn.fetch(
                "SELECT viewer_id FROM room_viewers WHERE merchant_id = $1 AND room_id = $2"
                " ORDER BY viewer_id",
                merchant_id,
                room_id,
            )
            first_time = await conn.fetchval(
                "SELECT count(*) FROM room_viewers rv WHERE rv.merchant_id = $1"
                " AND rv.room_id = $2 AND NOT EXISTS (SELECT 1 FROM visits v"
                " WHERE v.merchant_id = $1 AND v.viewer_id = rv.viewer_id AND v.room_id <> $2"
                " AND v.joined_at < (SELECT min(joined_at) FROM visits w WHERE w.merchant_id = $1"
                " AND w.room_id = $2 AND w.viewer_id = rv.viewer_id))",
                merchant_id,
                room_id,
            )
            fans = await self._fans(conn, merchant_id, [row["viewer_id"] for row in viewers])
        return fans, int(first_time)

    async def host_streams(
        self, merchant_id: str, host_ids: Collection[str] | None, since: datetime, until: datetime
    ) -> list[HostStream]:
        now = datetime.now(UTC)
        async with self._read() as conn:
            rooms = await conn.fetch(
                "SELECT room_id, host_id, started_at, ended_at, counters FROM rooms"
                " WHERE merchant_id = $1 AND started_at >= $2 AND started_at < $3"
                " AND ($4::text[] IS NULL OR host_id = ANY($4::text[]))"
                " ORDER BY host_id, started_at",
                merchant_id,
                since,
                until,
                None if host_ids is None else list(host_ids),
            )
            streams = []
            for room in rooms:
                counters = counters_from_dict(json.loads(room["counters"]))
                paying = await conn.fetchval(
                    "SELECT count(DISTINCT buyer_id) FROM orders WHERE merchant_id = $1"
                    " AND room_id = $2 AND paid_at IS NOT NULL",
                    merchant_id,
                    room["room_id"],
                )
                started = room["started_at"].astimezone(UTC)
                ended = _aware(room["ended_at"])
                deltas = await self._deltas(conn, merchant_id, room["room_id"])
                streams.append(
                    HostStream(
                        room_id=room["room_id"],
                        host_id=room["host_id"],
                        started_at=started,
                        ended_at=ended,
                        unique_viewers=counters.unique_viewers,
                        paying_buyers=int(paying),
                        paid_orders=counters.paid_orders,
                        gmv_paid_minor=counters.gmv_paid_minor,
                        refunded_minor=counters.refunded_minor,
                        viewer_seconds=presence.viewer_seconds(deltas, started, ended or now),
                    )
                )
        return streams
