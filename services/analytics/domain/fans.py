"""Fan profiles (粉丝画像): one user's figures with one merchant, their RFM scores and
segments, and the profile of a room's audience.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FanFigures:
    merchant_id: str
    user_id: str
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    streams_watched: int
    watch_seconds: int
    orders: int
    """Paid orders."""
    spend_minor: int
    """Paid, less what was refunded."""
    last_purchase_at: datetime | None
    categories: tuple[str, ...]
    entry_channel: str
    """The channel of the first visit (mini_program | h5 | app)."""
    entry: str
    """How the first visit came: share_link | invitation_card | direct."""
    sharer_id: str
    """Who brought the fan: their inviter, else the sharer of their first attributed view."""


@dataclass(frozen=True)
class RfmPolicy:
    """Thresholds of the RFM scores (1 to 3 each; 0 recency when nothing was bought) and of
    the segments. High value: a recent buyer (R >= 2) whose F + M is at least 5."""

    recent_days: int = 30
    lapsed_days: int = 90
    frequent_orders: int = 5
    repeat_orders: int = 2
    big_spend_minor: int = 100_000
    medium_spend_minor: int = 20_000
    new_days: int = 30


@dataclass(frozen=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int


def rfm(f: FanFigures, now: datetime, policy: RfmPolicy = RfmPolicy()) -> Rfm:
    if f.last_purchase_at is None:
        recency = 0
    elif now - f.last_purchase_at <= timedelta(days=policy.recent_days):
        recency = 3
    elif now - f.last_purchase_at <= timedelta(days=policy.lapsed_days):
        recency = 2
    else:
        recency = 1
    if f.orders >= policy.frequent_orders:
        frequency = 3
    elif f.orders >= policy.repeat_orders:
        frequency = 2
    else:
        frequency = 1 if f.orders else 0
    if f.spend_minor >= policy.big_spend_minor:
        monetary = 3
    elif f.spend_minor >= policy.medium_spend_minor:
        monetary = 2
    else:
        monetary = 1 if f.spend_minor > 0 else 0
    return Rfm(recency, frequency, monetary)


def _last_activity(f: FanFigures) -> datetime | None:
    moments = [m for m in (f.last_seen_at, f.last_purchase_at) if m is not None]
    return max(moments) if moments else None


def segments(f: FanFigures, now: datetime, policy: RfmPolicy = RfmPolicy()) -> tuple[str, ...]:
    """new (first seen within ``new_days``), active (seen or bought within ``recent_days``),
    lapsed (neither within ``lapsed_days``), high_value (the RFM rule); a fan may be in
    several (a new fan is also active)."""
    out = []
    if f.first_seen_at is not None and now - f.first_seen_at <= timedelta(days=policy.new_days):
        out.append("new")
    last = _last_activity(f)
    if last is not None and now - last <= timedelta(days=policy.recent_days):
        out.append("active")
    if last is None or now - last > timedelta(days=policy.lapsed_days):
        out.append("lapsed")
    score = rfm(f, now, policy)
    if score.recency >= 2 and score.frequency + score.monetary >= 5:
        out.append("high_value")
    return tuple(out)


@dataclass(frozen=True)
class FanProfile:
    figures: FanFigures
    rfm: Rfm
    segments: tuple[str, ...]


def profile(f: FanFigures, now: datetime, policy: RfmPolicy = RfmPolicy()) -> FanProfile:
    return FanProfile(f, rfm(f, now, policy), segments(f, now, policy))


@dataclass(frozen=True)
class Audience:
    viewers: int
    first_time_viewers: int
    """Viewers this room was the merchant's first stream for."""
    returning_viewers: int
    buyers: int
    """Viewers with a paid order of the merchant (in this room or before)."""
    segments: dict[str, int]
    entry_channels: dict[str, int]
    entries: dict[str, int]
    average_watch_seconds: float
    top_categories: list[tuple[str, int]]


def audience(
    fans: Sequence[FanFigures],
    first_time: int,
    now: datetime,
    policy: RfmPolicy = RfmPolicy(),
) -> Audience:
    """The aggregate profile of a room's viewers; ``first_time`` is how many of them had
    never watched one of the merchant's streams before this one (a query knows it)."""
    seg: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for fan in fans:
        seg.update(segments(fan, now, policy))
        categories.update(fan.categories)
    count = len(fans)
    return Audience(
        viewers=count,
        first_time_viewers=first_time,
        returning_viewers=count - first_time,
        buyers=sum(1 for fan in fans if fan.orders),
        segments=dict(sorted(seg.items())),
        entry_channels=dict(sorted(Counter(f.entry_channel or "unknown" for f in fans).items())),
        entries=dict(sorted(Counter(f.entry or "direct" for f in fans).items())),
        average_watch_seconds=round(sum(f.watch_seconds for f in fans) / count, 2) if count else 0,
        top_categories=sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[:10],
    )
