"""Prometheus gauges of the live rooms' figures, refreshed from the derived state.

One series per live room (labels merchant and room); a room's series are removed when it
ends, so the number of series stays the number of rooms live at once.
"""

from __future__ import annotations

import json

import asyncpg
from prometheus_client import Gauge

from services.analytics.domain.counters import counters_from_dict

LABELS = ["merchant", "room"]
CONCURRENT = Gauge("livecommerce_room_concurrent_viewers", "Viewers in the room now", LABELS)
UNIQUE = Gauge("livecommerce_room_unique_viewers", "Distinct viewers of the stream", LABELS)
ORDERS = Gauge("livecommerce_room_orders", "Orders placed in the room", LABELS)
PAID_ORDERS = Gauge("livecommerce_room_paid_orders", "Orders paid in the room", LABELS)
GMV_PAID = Gauge("livecommerce_room_gmv_paid_minor", "GMV paid, minor units", LABELS)
GMV_PLACED = Gauge("livecommerce_room_gmv_placed_minor", "GMV placed, minor units", LABELS)
ALL = (CONCURRENT, UNIQUE, ORDERS, PAID_ORDERS, GMV_PAID, GMV_PLACED)

_LIVE_ROOMS = """
SELECT r.merchant_id, r.room_id, r.counters,
       greatest(0, coalesce((SELECT sum(delta) FROM presence_deltas d
                             WHERE d.merchant_id = r.merchant_id AND d.room_id = r.room_id), 0))
         AS concurrent
FROM rooms r WHERE r.started_at IS NOT NULL AND r.ended_at IS NULL
"""


class LiveGauges:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._shown: set[tuple[str, str]] = set()

    async def refresh(self) -> int:
        """Set every live room's gauges; drop those of rooms no longer live. Returns how
        many rooms are live."""
        rows = await self._pool.fetch(_LIVE_ROOMS)
        live: set[tuple[str, str]] = set()
        for row in rows:
            labels = (row["merchant_id"], row["room_id"])
            live.add(labels)
            c = counters_from_dict(json.loads(row["counters"]))
            CONCURRENT.labels(*labels).set(int(row["concurrent"]))
            UNIQUE.labels(*labels).set(c.unique_viewers)
            ORDERS.labels(*labels).set(c.orders)
            PAID_ORDERS.labels(*labels).set(c.paid_orders)
            GMV_PAID.labels(*labels).set(c.gmv_paid_minor)
            GMV_PLACED.labels(*labels).set(c.gmv_placed_minor)
        for gone in self._shown - live:
            for gauge in ALL:
                gauge.remove(*gone)
        self._shown = live
        return len(live)
