"""The live dashboard and the post-stream review (复盘), both computed from one snapshot of a
room's derived state, so the live figures at the end and the review agree by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.analytics.domain import presence
from services.analytics.domain.counters import (
    ChannelCounts,
    MinuteCounts,
    ProductCounts,
    RoomCounters,
    minute_key,
    minute_of,
    parse_minute_key,
)
from services.analytics.domain.facts import CouponDropped, DrawHeld, FlashSaleStarted, ProductPinned

TOP = 10


@dataclass(frozen=True)
class Marker:
    kind: str
    """pin | flash_sale | coupon_drop | draw"""
    ref: str
    at: datetime
    label: str


def marker_of(fact: ProductPinned | DrawHeld | FlashSaleStarted | CouponDropped) -> Marker:
    """The timeline marker of a pin, a flash sale going live, a coupon drop or a draw; its
    (kind, ref) is unique per room, so recording it twice keeps one."""
    match fact:
        case ProductPinned():
            return Marker(
                "pin", f"{fact.sku_id}@{fact.at.isoformat()}", fact.at, f"pinned {fact.sku_id}"
            )
        case DrawHeld():
            label = f"draw: {fact.prize} ({fact.winners} winners)"
            return Marker("draw", fact.draw_id, fact.at, label)
        case FlashSaleStarted():
            return Marker("flash_sale", fact.campaign_id, fact.at, f"flash sale of {fact.sku_id}")
        case CouponDropped():
            return Marker("coupon_drop", fact.template_id, fact.at, f"coupon drop of {fact.quota}")


@dataclass(frozen=True)
class SharerFigures:
    sharer_id: str
    viewers: int
    orders: int
    paid_orders: int
    gmv_paid_minor: int


@dataclass(frozen=True)
class RoomSnapshot:
    """Everything the dashboard and the review read, gathered in one read transaction."""

    merchant_id: str
    room_id: str
    host_id: str
    title: str
    started_at: datetime | None
    ended_at: datetime | None
    counters: RoomCounters
    presence: Sequence[presence.Delta]
    markers: Sequence[Marker]
    pin_viewers: int
    """Distinct viewers who were in the room while a product was pinned."""
    buyers: int
    paying_buyers: int
    new_buyers: int
    """Paying buyers with no paid order of the merchant before this room started."""
    sharers: Sequence[SharerFigures]
    stock_left: Mapping[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "live" if self.started_at is not None else "scheduled"


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass(frozen=True)
class Funnel:
    viewers: int
    pin_viewers: int
    buyers: int
    paying_buyers: int
    view_to_pin: float
    pin_to_order: float
    order_to_paid: float
    view_to_paid: float


def funnel(s: RoomSnapshot) -> Funnel:
    viewers = s.counters.unique_viewers
    return Funnel(
        viewers=viewers,
        pin_viewers=s.pin_viewers,
        buyers=s.buyers,
        paying_buyers=s.paying_buyers,
        view_to_pin=_ratio(s.pin_viewers, viewers),
        pin_to_order=_ratio(s.buyers, s.pin_viewers),
        order_to_paid=_ratio(s.paying_buyers, s.buyers),
        view_to_paid=_ratio(s.paying_buyers, viewers),
    )


@dataclass(frozen=True)
class TimelineMinute:
    minute: str
    viewers: int
    """The highest concurrency in the minute."""
    joins: int
    comments: int
    orders: int
    gmv_placed_minor: int
    paid_orders: int
    gmv_paid_minor: int
    refunded_minor: int


def timeline(s: RoomSnapshot, now: datetime) -> list[TimelineMinute]:
    """Every minute from the start (or the first thing counted) to the end (or now)."""
    counted = sorted(s.counters.minutes)
    if s.started_at is not None:
        start = s.started_at
    elif counted:
        start = parse_minute_key(counted[0])
    else:
        return []
    end = s.ended_at or now
    out = []
    for viewers in presence.per_minute(s.presence, start, end):
        key = minute_key(viewers.minute)
        m = s.counters.minutes.get(key, MinuteCounts())
        out.append(
            TimelineMinute(
                minute=key,
                viewers=viewers.peak,
                joins=m.joins,
                comments=m.comments,
                orders=m.orders,
                gmv_placed_minor=m.gmv_placed_minor,
                paid_orders=m.paid_orders,
                gmv_paid_minor=m.gmv_paid_minor,
                refunded_minor=m.refunded_minor,
            )
        )
    return out


@dataclass(frozen=True)
class ProductFigures:
    sku_id: str
    orders: int
    units_placed: int
    gmv_placed_minor: int
    paid_orders: int
    units_paid: int
    gmv_paid_minor: int
    units_refunded: int
    refunded_minor: int
    pins: int
    stock_left: int | None


def products(s: RoomSnapshot) -> list[ProductFigures]:
    """Products by paid GMV, then units paid, then id."""
    skus = set(s.counters.products) | set(s.stock_left)
    rows = []
    for sku in skus:
        p = s.counters.products.get(sku, ProductCounts())
        rows.append(
            ProductFigures(
                sku_id=sku,
                orders=p.orders,
                units_placed=p.units_placed,
                gmv_placed_minor=p.gmv_placed_minor,
                paid_orders=p.paid_orders,
                units_paid=p.units_paid,
                gmv_paid_minor=p.gmv_paid_minor,
                units_refunded=p.units_refunded,
                refunded_minor=p.refunded_minor,
                pins=p.pins,
                stock_left=s.stock_left.get(sku),
            )
        )
    return sorted(rows, key=lambda r: (-r.gmv_paid_minor, -r.units_paid, r.sku_id))


@dataclass(frozen=True)
class Headline:
    state: str
    started_at: datetime | None
    ended_at: datetime | None
    live_seconds: int
    concurrent_viewers: int
    unique_viewers: int
    peak_viewers: int
    peak_at: datetime | None
    average_viewers: float
    visits: int
    comments: int
    comments_per_minute: float
    subscribers: int
    pins: int
    orders: int
    paid_orders: int
    cancelled_orders: int
    gmv_placed_minor: int
    gmv_paid_minor: int
    buyers: int
    paying_buyers: int
    conversion: float
    """Paying buyers / unique viewers."""
    average_order_minor: int
    refunds: int
    refunded_minor: int
    net_gmv_minor: int


def headline(s: RoomSnapshot, now: datetime) -> Headline:
    c = s.counters
    end = s.ended_at or now
    live = max(0, int((end - s.started_at).total_seconds())) if s.started_at else 0
    top = presence.peak(s.presence)
    watched = presence.viewer_seconds(s.presence, s.started_at, end) if s.started_at else 0
    return Headline(
        state=s.state,
        started_at=s.started_at,
        ended_at=s.ended_at,
        live_seconds=live,
        concurrent_viewers=0 if s.ended_at else presence.current(s.presence),
        unique_viewers=c.unique_viewers,
        peak_viewers=top.viewers,
        peak_at=top.at,
        average_viewers=round(watched / live, 2) if live else 0.0,
        visits=c.visits,
        comments=c.comments,
        comments_per_minute=round(c.comments * 60 / live, 2) if live else 0.0,
        subscribers=c.subscribers,
        pins=c.pins,
        orders=c.orders,
        paid_orders=c.paid_orders,
        cancelled_orders=c.cancelled_orders,
        gmv_placed_minor=c.gmv_placed_minor,
        gmv_paid_minor=c.gmv_paid_minor,
        buyers=s.buyers,
        paying_buyers=s.paying_buyers,
        conversion=_ratio(s.paying_buyers, c.unique_viewers),
        average_order_minor=c.gmv_paid_minor // c.paid_orders if c.paid_orders else 0,
        refunds=c.refunds,
        refunded_minor=c.refunded_minor,
        net_gmv_minor=c.gmv_paid_minor - c.refunded_minor,
    )


@dataclass(frozen=True)
class LiveDashboard:
    merchant_id: str
    room_id: str
    host_id: str
    title: str
    headline: Headline
    comments_last_minute: int
    funnel: Funnel
    products: list[ProductFigures]
    timeline: list[TimelineMinute]
    markers: list[Marker]


def live_dashboard(s: RoomSnapshot, now: datetime) -> LiveDashboard:
    last_minute = minute_key(minute_of(now) - timedelta(minutes=1))
    return LiveDashboard(
        merchant_id=s.merchant_id,
        room_id=s.room_id,
        host_id=s.host_id,
        title=s.title,
        headline=headline(s, now),
        comments_last_minute=s.counters.minutes.get(last_minute, MinuteCounts()).comments,
        funnel=funnel(s),
        products=products(s),
        timeline=timeline(s, now),
        markers=sorted(s.markers, key=lambda m: (m.at, m.kind, m.ref)),
    )


@dataclass(frozen=True)
class BuyerSplit:
    new: int
    returning: int


@dataclass(frozen=True)
class ChannelFigures:
    channel: str
    visits: int
    viewers: int
    orders: int
    paid_orders: int
    gmv_paid_minor: int


@dataclass(frozen=True)
class Refunds:
    refunds: int
    refunded_minor: int
    by_product: list[tuple[str, int, int]]
    """(sku, units refunded, amount refunded), largest amount first."""


@dataclass(frozen=True)
class Review:
    merchant_id: str
    room_id: str
    host_id: str
    title: str
    headline: Headline
    funnel: Funnel
    timeline: list[TimelineMinute]
    markers: list[Marker]
    top_products: list[ProductFigures]
    top_sharers: list[SharerFigures]
    buyers: BuyerSplit
    channels: list[ChannelFigures]
    refunds: Refunds


def _channels(channels: Mapping[str, ChannelCounts]) -> list[ChannelFigures]:
    return sorted(
        (
            ChannelFigures(name, c.visits, c.viewers, c.orders, c.paid_orders, c.gmv_paid_minor)
            for name, c in channels.items()
        ),
        key=lambda c: (-c.gmv_paid_minor, -c.visits, c.channel),
    )


def review(s: RoomSnapshot, now: datetime) -> Review:
    dashboard = live_dashboard(s, now)
    refunded = sorted(
        (
            (sku, p.units_refunded, p.refunded_minor)
            for sku, p in s.counters.products.items()
            if p.units_refunded or p.refunded_minor
        ),
        key=lambda r: (-r[2], r[0]),
    )
    return Review(
        merchant_id=s.merchant_id,
        room_id=s.room_id,
        host_id=s.host_id,
        title=s.title,
        headline=dashboard.headline,
        funnel=dashboard.funnel,
        timeline=dashboard.timeline,
        markers=dashboard.markers,
        top_products=dashboard.products[:TOP],
        top_sharers=sorted(
            s.sharers, key=lambda r: (-r.gmv_paid_minor, -r.paid_orders, -r.viewers, r.sharer_id)
        )[:TOP],
        buyers=BuyerSplit(new=s.new_buyers, returning=s.paying_buyers - s.new_buyers),
        channels=_channels(s.counters.channels),
        refunds=Refunds(s.counters.refunds, s.counters.refunded_minor, refunded),
    )


def review_rows(r: Review) -> list[tuple[str, str, str, str]]:
    """The review as (section, name, metric, value) rows: one CSV holds every figure."""
    rows: list[tuple[str, str, str, str]] = []

    def add(section: str, name: str, values: Mapping[str, object]) -> None:
        for metric, value in values.items():
            shown = value.isoformat() if isinstance(value, datetime) else value
            rows.append((section, name, metric, "" if shown is None else str(shown)))

    add("headline", r.room_id, vars(r.headline))
    add("funnel", r.room_id, vars(r.funnel))
    for minute in r.timeline:
        add("timeline", minute.minute, {k: v for k, v in vars(minute).items() if k != "minute"})
    for marker in r.markers:
        add("marker", marker.ref, {"kind": marker.kind, "at": marker.at, "label": marker.label})
    for product in r.top_products:
        add("product", product.sku_id, {k: v for k, v in vars(product).items() if k != "sku_id"})
    for sharer in r.top_sharers:
        add("sharer", sharer.sharer_id, {k: v for k, v in vars(sharer).items() if k != "sharer_id"})
    add("buyers", r.room_id, vars(r.buyers))
    for channel in r.channels:
        add("channel", channel.channel, {k: v for k, v in vars(channel).items() if k != "channel"})
    add("refunds", r.room_id, {"refunds": r.refunds.refunds, "refunded": r.refunds.refunded_minor})
    for sku, units, amount in r.refunds.by_product:
        add("refund", sku, {"units": units, "refunded_minor": amount})
    return rows
