"""Ports of the analytics service: where derived state is written and read.

The writer is bound to one transaction that also holds the events' inbox rows, so every
write of a batch commits with the record that its events were applied, or not at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from services.analytics.domain import facts as f
from services.analytics.domain.counters import RoomCounters
from services.analytics.domain.fans import FanFigures
from services.analytics.domain.hosts import HostStream
from services.analytics.domain.review import Marker, RoomSnapshot


@dataclass(frozen=True)
class RecordedOrder:
    room_id: str
    channel: str
    lines: tuple[f.Line, ...]


class ProjectionWriter(Protocol):
    async def claim(self, event_ids: Sequence[UUID]) -> set[UUID]:
        """Record the events in the inbox; the ids not seen before (to be applied)."""

    async def reject(self, event_id: UUID, event_type: str, reason: str, raw: bytes) -> None:
        """Keep an event that cannot be applied, with why (and claim it)."""

    async def counters(self, merchant_id: str, room_id: str) -> RoomCounters:
        """The room's counters, its row locked until the transaction ends."""

    async def save_counters(
        self, merchant_id: str, room_id: str, counters: RoomCounters, applied: int
    ) -> None: ...

    async def room_scheduled(self, fact: f.RoomScheduled) -> None: ...

    async def room_started(self, fact: f.RoomStarted) -> None: ...

    async def room_ended(self, fact: f.RoomEnded) -> None: ...

    async def open_visit(self, fact: f.ViewerJoined) -> bool:
        """Record the visit's join; False when it was already recorded."""

    async def close_visit(self, fact: f.ViewerLeft) -> bool:
        """Record the visit's leave; False when it was already recorded."""

    async def add_presence(
        self, merchant_id: str, room_id: str, at: datetime, delta: int
    ) -> None: ...

    async def add_viewer(self, merchant_id: str, room_id: str, viewer_id: str) -> bool:
        """True when the viewer is new to the room."""

    async def add_subscriber(self, fact: f.ReminderSent | f.ReminderSubscribed) -> bool:
        """True when the viewer is new among the room's subscribers."""

    async def pin(self, fact: f.ProductPinned) -> None:
        """Open a pin interval, closing the room's open one (at most one is pinned)."""

    async def unpin(self, fact: f.ProductUnpinned) -> None: ...

    async def add_marker(self, merchant_id: str, room_id: str, marker: Marker) -> None: ...

    async def record_order(self, fact: f.OrderPlaced) -> None: ...

    async def recorded_order(self, merchant_id: str, order_id: str) -> RecordedOrder | None: ...

    async def order_paid(self, fact: f.OrderPaid) -> bool:
        """False when the order was already paid (a second payment is refunded by order)."""

    async def order_cancelled(self, fact: f.OrderCancelled) -> None: ...

    async def order_refunded(self, fact: f.OrderRefunded) -> None: ...

    async def stock_level(self, fact: f.StockLevel) -> None: ...

    async def sale(
        self, fact: f.SaleScheduled | f.SaleReserved | f.SaleReleased | f.SaleEnded
    ) -> None: ...

    async def campaign(self, fact: f.CampaignScheduled) -> None: ...

    async def attribution(
        self, fact: f.ViewAttributed | f.InviteeBound | f.OrderAttributed
    ) -> None: ...

    async def categories(self, fact: f.CategoriesConfigured) -> None: ...


class ProjectionStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[ProjectionWriter]: ...


class AnalyticsQueries(Protocol):
    """Reads for the HTTP API, each in one read-only snapshot."""

    async def room_snapshot(self, merchant_id: str, room_id: str) -> RoomSnapshot | None: ...

    async def room_version(self, merchant_id: str, room_id: str) -> int | None:
        """How many events the room's counters have taken (changes when they change)."""

    async def fan(self, merchant_id: str, user_id: str) -> FanFigures | None: ...

    async def room_audience(
        self, merchant_id: str, room_id: str
    ) -> tuple[list[FanFigures], int] | None:
        """The room's viewers' figures and how many watched the merchant for the first time."""

    async def host_streams(
        self, merchant_id: str, host_ids: Collection[str] | None, since: datetime, until: datetime
    ) -> list[HostStream]: ...
