"""Host performance (主播业绩): a host's streams in a period, summed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HostStream:
    """One stream of a host that started in the period; ``ended_at`` None: still live
    (counted until ``now``)."""

    room_id: str
    host_id: str
    started_at: datetime
    ended_at: datetime | None
    unique_viewers: int
    paying_buyers: int
    paid_orders: int
    gmv_paid_minor: int
    refunded_minor: int
    viewer_seconds: int


@dataclass(frozen=True)
class HostPerformance:
    host_id: str
    streams: int
    hours_live: float
    gmv_paid_minor: int
    net_gmv_minor: int
    paid_orders: int
    unique_viewers: int
    """Summed over streams (a viewer of two streams counts twice)."""
    conversion: float
    """Paying buyers / unique viewers, summed over streams."""
    average_viewers: float
    """Viewer-seconds / live seconds: the mean concurrency while live."""
    rooms: tuple[str, ...]


def performance(host_id: str, streams: Sequence[HostStream], now: datetime) -> HostPerformance:
    live_seconds = sum(
        max(0.0, ((s.ended_at or now) - s.started_at).total_seconds()) for s in streams
    )
    viewers = sum(s.unique_viewers for s in streams)
    gmv = sum(s.gmv_paid_minor for s in streams)
    return HostPerformance(
        host_id=host_id,
        streams=len(streams),
        hours_live=round(live_seconds / 3600, 3),
        gmv_paid_minor=gmv,
        net_gmv_minor=gmv - sum(s.refunded_minor for s in streams),
        paid_orders=sum(s.paid_orders for s in streams),
        unique_viewers=viewers,
        conversion=round(sum(s.paying_buyers for s in streams) / viewers, 4) if viewers else 0.0,
        average_viewers=(
            round(sum(s.viewer_seconds for s in streams) / live_seconds, 2) if live_seconds else 0.0
        ),
        rooms=tuple(s.room_id for s in sorted(streams, key=lambda s: s.started_at)),
    )
