"""A room's counters and how each fact adds to them.

Every counter is a sum, and each fact lands in the minute it happened (its own time, never
the time it was processed), so folding the same facts in any order gives the same
counters: a replay after a restart, in whatever order partitions are read, is exact. That
an event is folded only once is the inbox's job (one row per event id, in the same
transaction). Figures that are not sums (concurrency, peak) come from presence deltas
(:mod:`services.analytics.domain.presence`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.analytics.domain.facts import (
    CommentPosted,
    Line,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ProductPinned,
    ReminderSent,
    ReminderSubscribed,
    ViewerJoined,
)


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def minute_key(at: datetime) -> str:
    """The minute ``at`` falls in, as ``YYYY-MM-DDTHH:MMZ`` (UTC): sortable as text."""
    return minute_of(at).strftime("%Y-%m-%dT%H:%MZ")


def parse_minute_key(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class MinuteCounts:
    joins: int = 0
    comments: int = 0
    orders: int = 0
    gmv_placed_minor: int = 0
    paid_orders: int = 0
    gmv_paid_minor: int = 0
    refunded_minor: int = 0


@dataclass(frozen=True)
class ProductCounts:
    orders: int = 0
    units_placed: int = 0
    gmv_placed_minor: int = 0
    paid_orders: int = 0
    units_paid: int = 0
    gmv_paid_minor: int = 0
    units_refunded: int = 0
    refunded_minor: int = 0
    pins: int = 0


@dataclass(frozen=True)
class ChannelCounts:
    visits: int = 0
    viewers: int = 0
    orders: int = 0
    paid_orders: int = 0
    gmv_paid_minor: int = 0


@dataclass(frozen=True)
class RoomCounters:
    visits: int = 0
    unique_viewers: int = 0
    comments: int = 0
    subscribers: int = 0
    pins: int = 0
    orders: int = 0
    gmv_placed_minor: int = 0
    paid_orders: int = 0
    gmv_paid_minor: int = 0
    cancelled_orders: int = 0
    refunds: int = 0
    refunded_minor: int = 0
    minutes: Mapping[str, MinuteCounts] = field(default_factory=dict)
    products: Mapping[str, ProductCounts] = field(default_factory=dict)
    channels: Mapping[str, ChannelCounts] = field(default_factory=dict)


C = TypeVar("C", MinuteCounts, ProductCounts, ChannelCounts)


def _add(counts: C, **deltas: int) -> C:
    return replace(counts, **{name: getattr(counts, name) + d for name, d in deltas.items()})


def _bump(table: Mapping[str, C], key: str, empty: C, **deltas: int) -> dict[str, C]:
    changed = dict(table)
    changed[key] = _add(table.get(key, empty), **deltas)
    return changed


def _minute(c: RoomCounters, at: datetime, **deltas: int) -> dict[str, MinuteCounts]:
    return _bump(c.minutes, minute_key(at), MinuteCounts(), **deltas)


def _channel(channel: str) -> str:
    return channel or "unknown"


def _per_product(
    products: Mapping[str, ProductCounts], lines: tuple[Line, ...], **kind: str
) -> dict[str, ProductCounts]:
    """Add each line to its product: ``kind`` names the counters that take the line's
    quantity (``units``), total (``money``) and one per order (``orders``)."""
    changed = dict(products)
    seen: set[str] = set()
    for line in lines:
        deltas = {kind["units"]: line.quantity, kind["money"]: line.total_minor}
        if "orders" in kind and line.sku_id not in seen:
            deltas[kind["orders"]] = 1
            seen.add(line.sku_id)
        changed[line.sku_id] = _add(changed.get(line.sku_id, ProductCounts()), **deltas)
    return changed


def count_visit(c: RoomCounters, fact: ViewerJoined, *, first_in_room: bool) -> RoomCounters:
    viewer = 1 if first_in_room else 0
    return replace(
        c,
        visits=c.visits + 1,
        unique_viewers=c.unique_viewers + viewer,
        minutes=_minute(c, fact.at, joins=1),
        channels=_bump(
            c.channels, _channel(fact.channel), ChannelCounts(), visits=1, viewers=viewer
        ),
    )


def count_comment(c: RoomCounters, fact: CommentPosted) -> RoomCounters:
    return replace(c, comments=c.comments + 1, minutes=_minute(c, fact.at, comments=1))


def count_subscriber(
    c: RoomCounters, fact: ReminderSent | ReminderSubscribed, *, first_in_room: bool
) -> RoomCounters:
    return replace(c, subscribers=c.subscribers + (1 if first_in_room else 0))


def count_pin(c: RoomCounters, fact: ProductPinned) -> RoomCounters:
    return replace(
        c, pins=c.pins + 1, products=_bump(c.products, fact.sku_id, ProductCounts(), pins=1)
    )


def count_order_placed(c: RoomCounters, fact: OrderPlaced) -> RoomCounters:
    return replace(
        c,
        orders=c.orders + 1,
        gmv_placed_minor=c.gmv_placed_minor + fact.total_minor,
        minutes=_minute(c, fact.at, orders=1, gmv_placed_minor=fact.total_minor),
        channels=_bump(c.channels, _channel(fact.channel), ChannelCounts(), orders=1),
        products=_per_product(
            c.products, fact.lines, units="units_placed", money="gmv_placed_minor", orders="orders"
        ),
    )


def count_order_paid(c: RoomCounters, fact: OrderPaid) -> RoomCounters:
    return replace(
        c,
        paid_orders=c.paid_orders + 1,
        gmv_paid_minor=c.gmv_paid_minor + fact.amount_minor,
        minutes=_minute(c, fact.at, paid_orders=1, gmv_paid_minor=fact.amount_minor),
        channels=_bump(
            c.channels,
            _channel(fact.channel),
            ChannelCounts(),
            paid_orders=1,
            gmv_paid_minor=fact.amount_minor,
        ),
        products=_per_product(
            c.products, fact.lines, units="units_paid", money="gmv_paid_minor", orders="paid_orders"
        ),
    )


def count_cancellation(c: RoomCounters, fact: OrderCancelled) -> RoomCounters:
    return replace(c, cancelled_orders=c.cancelled_orders + 1)


def count_refund(c: RoomCounters, fact: OrderRefunded) -> RoomCounters:
    return replace(
        c,
        refunds=c.refunds + 1,
        refunded_minor=c.refunded_minor + fact.amount_minor,
        minutes=_minute(c, fact.at, refunded_minor=fact.amount_minor),
        products=_per_product(
            c.products, fact.lines, units="units_refunded", money="refunded_minor"
        ),
    )


def counters_to_dict(c: RoomCounters) -> dict[str, Any]:
    return asdict(c)


def _counts_from(kind: type[C], raw: Mapping[str, Any]) -> C:
    names = {f.name for f in fields(kind)}
    return kind(**{k: int(v) for k, v in raw.items() if k in names})


def counters_from_dict(raw: Mapping[str, Any]) -> RoomCounters:
    """The inverse of :func:`counters_to_dict`; unknown keys (a newer version) are ignored
    and missing ones are zero, so the stored shape can grow."""
    scalars = {
        f.name: int(raw[f.name])
        for f in fields(RoomCounters)
        if f.name not in ("minutes", "products", "channels") and f.name in raw
    }
    return RoomCounters(
        **scalars,
        minutes={k: _counts_from(MinuteCounts, v) for k, v in raw.get("minutes", {}).items()},
        products={k: _counts_from(ProductCounts, v) for k, v in raw.get("products", {}).items()},
        channels={k: _counts_from(ChannelCounts, v) for k, v in raw.get("channels", {}).items()},
    )
