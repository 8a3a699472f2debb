"""The review figures of the scripted stream (``script.py``), worked out by hand.

Concurrency: v1 10-90 s, v2 20-240, v3 30-300, v1 130-300, v4 140-300, v6 160-190: peak 5 at
160 s; 930 viewer-seconds over 300 s live: 3.1 on average. Pins: SKU-A 60-150, SKU-B 200-end;
v6 (160-190) saw none, so 4 of 5 viewers saw a pinned product. Orders: o1 9,900 (v2, h5,
through s1), o2 24,800 (v3, app), o3 5,000 (v4, cancelled), o4 10,000 (v1, 5,000 refunded).
v3 paid in room r0 the day before: returning; v1 and v2 are new buyers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def iso(t0: datetime, seconds: float) -> str:
    return (t0 + timedelta(seconds=seconds)).isoformat()


def headline(t0: datetime) -> dict[str, Any]:
    return {
        "state": "ended",
        "started_at": iso(t0, 0),
        "ended_at": iso(t0, 300),
        "live_seconds": 300,
        "concurrent_viewers": 0,
        "unique_viewers": 5,
        "peak_viewers": 5,
        "peak_at": iso(t0, 160),
        "average_viewers": 3.1,
        "visits": 6,
        "comments": 4,
        "comments_per_minute": 0.8,
        "subscribers": 2,
        "pins": 2,
        "orders": 4,
        "paid_orders": 3,
        "cancelled_orders": 1,
        "gmv_placed_minor": 49_700,
        "gmv_paid_minor": 44_700,
        "buyers": 4,
        "paying_buyers": 3,
        "conversion": 0.6,
        "average_order_minor": 14_900,
        "refunds": 1,
        "refunded_minor": 5_000,
        "net_gmv_minor": 39_700,
    }


FUNNEL = {
    "viewers": 5,
    "pin_viewers": 4,
    "buyers": 4,
    "paying_buyers": 3,
    "view_to_pin": 0.8,
    "pin_to_order": 1.0,
    "order_to_paid": 0.75,
    "view_to_paid": 0.6,
}

_TIMELINE = (
    # viewers, joins, comments, orders, placed, paid orders, paid, refunded
    (3, 3, 1, 0, 0, 0, 0, 0),
    (3, 0, 2, 2, 34_700, 1, 9_900, 0),
    (5, 3, 1, 1, 5_000, 1, 24_800, 0),
    (5, 0, 0, 1, 10_000, 1, 10_000, 5_000),
    (4, 0, 0, 0, 0, 0, 0, 0),
    (3, 0, 0, 0, 0, 0, 0, 0),
)
_MINUTE_FIELDS = (
    "viewers",
    "joins",
    "comments",
    "orders",
    "gmv_placed_minor",
    "paid_orders",
    "gmv_paid_minor",
    "refunded_minor",
)


def timeline(t0: datetime) -> list[dict[str, Any]]:
    return [
        {
            "minute": (t0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%MZ"),
            **dict(zip(_MINUTE_FIELDS, row, strict=True)),
        }
        for i, row in enumerate(_TIMELINE)
    ]


def markers(t0: datetime) -> list[dict[str, Any]]:
    return [
        {"kind": "pin", "ref": f"SKU-A@{iso(t0, 60)}", "at": iso(t0, 60), "label": "pinned SKU-A"},
        {"kind": "flash_sale", "ref": "c1", "at": iso(t0, 65), "label": "flash sale of SKU-A"},
        {"kind": "coupon_drop", "ref": "tpl1", "at": iso(t0, 100), "label": "coupon drop of 100"},
        {
            "kind": "pin",
            "ref": f"SKU-B@{iso(t0, 200)}",
            "at": iso(t0, 200),
            "label": "pinned SKU-B",
        },
        {"kind": "draw", "ref": "d1", "at": iso(t0, 220), "label": "draw: lipstick (2 winners)"},
    ]


PRODUCTS = [
    {
        "sku_id": "SKU-A",
        "orders": 2,
        "units_placed": 3,
        "gmv_placed_minor": 29_700,
        "paid_orders": 2,
        "units_paid": 3,
        "gmv_paid_minor": 29_700,
        "units_refunded": 0,
        "refunded_minor": 0,
        "pins": 1,
        "stock_left": 97,  # 80 unallocated + 20 in the flash sale - 3 reserved
    },
    {
        "sku_id": "SKU-B",
        "orders": 3,
        "units_placed": 4,
        "gmv_placed_minor": 20_000,
        "paid_orders": 2,
        "units_paid": 3,
        "gmv_paid_minor": 15_000,
        "units_refunded": 1,
        "refunded_minor": 5_000,
        "pins": 1,
        "stock_left": 50,
    },
]

SHARERS = [
    {"sharer_id": "s1", "viewers": 1, "orders": 1, "paid_orders": 1, "gmv_paid_minor": 9_900}
]

CHANNELS = [
    {
        "channel": "app",
        "visits": 1,
        "viewers": 1,
        "orders": 1,
        "paid_orders": 1,
        "gmv_paid_minor": 24_800,
    },
    {
        "channel": "mini_program",
        "visits": 3,
        "viewers": 2,
        "orders": 2,
        "paid_orders": 1,
        "gmv_paid_minor": 10_000,
    },
    {
        "channel": "h5",
        "visits": 2,
        "viewers": 2,
        "orders": 1,
        "paid_orders": 1,
        "gmv_paid_minor": 9_900,
    },
]

REFUNDS = {"refunds": 1, "refunded_minor": 5_000, "by_product": [["SKU-B", 1, 5_000]]}


def review(merchant: str, t0: datetime) -> dict[str, Any]:
    """The whole review as the JSON endpoint answers it."""
    return {
        "merchant_id": merchant,
        "room_id": "r1",
        "host_id": "h1",
        "title": "Autumn lipstick live",
        "headline": headline(t0),
        "funnel": FUNNEL,
        "timeline": timeline(t0),
        "markers": markers(t0),
        "top_products": PRODUCTS,
        "top_sharers": SHARERS,
        "buyers": {"new": 2, "returning": 1},
        "channels": CHANNELS,
        "refunds": REFUNDS,
    }
