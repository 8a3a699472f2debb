"""What the room handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from services.room.domain.comments import CommentPosted
from services.room.domain.draws import DrawHeld
from services.room.domain.reminders import Reminder, ReminderKind, SubscriptionTarget
from services.room.domain.room import Room, RoomEvent, RoomScheduled
from services.room.domain.viewers import LeaveReason, ViewerFiguresNow, ViewerJoined, ViewerLeft

Clock = Callable[[], datetime]


class RoomRepository(Protocol):
    """Rooms as events plus their current state, written together in one transaction."""

    async def create(self, merchant_id: str, event: RoomScheduled) -> Room:
        """A new room; AlreadyExistsError if the id is taken, HostDoubleBookedError if the
        host's slot overlaps another scheduled or live room of theirs."""
        ...

    async def load(self, merchant_id: str, room_id: str) -> Room:
        """The room as of its last event; RoomNotFoundError if there is none."""
        ...

    async def save(self, room: Room, events: Sequence[RoomEvent]) -> Room:
        """Append ``events`` after ``room.version`` (ConcurrencyError if it moved on) and
        return the room with them applied; HostDoubleBookedError when a moved slot overlaps."""
        ...


@dataclass(frozen=True)
class StreamUrls:
    push_url: str
    """Secret: only the room's host and operators see it."""
    play_urls: Mapping[str, str]
    """Protocol (flv, hls ...) to URL, for viewers."""


class StreamingProvider(Protocol):
    """The streaming provider (ingest, CDN, players): where the host pushes and viewers play."""

    def urls(self, merchant_id: str, room_id: str) -> StreamUrls: ...


class JoinOutcome(StrEnum):
    JOINED = "joined"
    """A new visit: a ViewerJoined event is owed."""
    PRESENT = "present"
    """The viewer was already in the room: counted as a heartbeat, no new visit."""
    NOT_LIVE = "not_live"
    """Presence does not know the room as live (not started, ended, or Redis lost it)."""


@dataclass(frozen=True)
class JoinAttempt:
    merchant_id: str
    room_id: str
    viewer_id: str
    visit_id: str
    at: datetime


@dataclass(frozen=True)
class JoinDecision:
    outcome: JoinOutcome
    visit_id: str = ""


@dataclass(frozen=True)
class Departure:
    """A visit presence closed: the viewer left, timed out, or the room ended. Its watch
    time, ``left_at - joined_at``, is added to the room's total as it closes."""

    viewer_id: str
    visit_id: str
    joined_at: datetime
    left_at: datetime


@dataclass(frozen=True)
class ParkedDeparture:
    """A departure waiting for its ViewerLeft to be recorded."""

    merchant_id: str
    room_id: str
    reason: LeaveReason
    departure: Departure


class Presence(Protocol):
    """Who is in a live room now, and the room's viewer figures (Redis): every operation on
    one room is atomic, so a join storm needs no locks and the peak is exact."""

    async def join_many(self, attempts: Sequence[JoinAttempt]) -> list[JoinDecision]:
        """Decide many joins in one round trip."""
        ...

    async def forget_joins(self, attempts: Sequence[JoinAttempt]) -> None:
        """Undo joins whose ViewerJoined could not be made durable."""
        ...

    async def heartbeat(self, merchant_id: str, room_id: str, viewer_id: str, at: datetime) -> bool:
        """Mark the viewer seen now; False if presence does not have them (timed out)."""
        ...

    async def leave(
        self, merchant_id: str, room_id: str, viewer_id: str, at: datetime
    ) -> Departure | None:
        """Take the viewer out, watching until ``at``; None if they were not in the room."""
        ...

    async def expire(
        self, merchant_id: str, room_id: str, seen_before: datetime, limit: int
    ) -> list[Departure]:
        """Take out viewers last seen before ``seen_before`` (at most ``limit``), each
        watching until they were last seen."""
        ...

    async def empty(
        self, merchant_id: str, room_id: str, at: datetime, limit: int
    ) -> list[Departure]:
        """Take out everyone (at most ``limit``), watching until ``at``."""
        ...

    async def open(self, merchant_id: str, room_id: str) -> None:
        """Mark the room live: joins are accepted from now on."""
        ...

    async def close(self, merchant_id: str, room_id: str) -> None:
        """Refuse joins from now on (the room ended); figures are kept for a while."""
        ...

    async def live_rooms(self) -> list[tuple[str, str]]:
        """(merchant, room) of every room open for joins."""
        ...

    async def figures(
        self, merchant_id: str, room_id: str, since: datetime, now: datetime
    ) -> ViewerFiguresNow:
        """Concurrent viewers are those seen since ``since``; watch time counts open visits
        until ``now``."""
        ...

    async def present(self, merchant_id: str, room_id: str, since: datetime) -> list[str]:
        """Viewers seen since ``since``."""
        ...

    async def park_departures(self, parked: Sequence[ParkedDeparture]) -> None:
        """Keep departures whose ViewerLeft could not be recorded, for a later retry (the
        viewer is already out of presence: without this the visit would never end)."""
        ...

    async def take_parked(self, limit: int) -> list[ParkedDeparture]:
        """Take out (at most ``limit``) parked departures, oldest first."""
        ...


class VisitLog(Protocol):
    """Durable visit events; concurrent calls are group-committed."""

    async def joined(self, merchant_id: str, event: ViewerJoined) -> None:
        """Append ViewerJoined as the first event of a new visit stream."""
        ...

    async def left(self, merchant_id: str, event: ViewerLeft) -> None:
        """Append ViewerLeft after the visit's ViewerJoined."""
        ...


@dataclass(frozen=True)
class StoredComment:
    comment_id: str
    viewer_id: str
    text: str
    posted_at: datetime


class CommentLog(Protocol):
    """Durable comments: CommentPosted/CommentDeleted events and their table."""

    async def post(self, merchant_id: str, event: CommentPosted) -> None: ...

    async def delete(
        self, merchant_id: str, room_id: str, comment_id: str, deleted_by: str
    ) -> StoredComment:
        """Mark it deleted (CommentDeleted); NotFoundError if unknown; idempotent."""
        ...

    async def commenters(self, merchant_id: str, room_id: str, keyword: str) -> list[str]:
        """Viewers with a comment (not deleted) containing ``keyword`` (normalised)."""
        ...


class CommentFeed(Protocol):
    """The recent comments of a room and the slow-mode clock of each viewer (Redis)."""

    async def add(self, merchant_id: str, room_id: str, comment: StoredComment) -> None: ...

    async def recent(self, merchant_id: str, room_id: str, limit: int) -> list[StoredComment]:
        """Newest first."""
        ...

    async def remove(self, merchant_id: str, room_id: str, comment_id: str) -> None: ...

    async def claim_turn(
        self, merchant_id: str, room_id: str, viewer_id: str, interval_seconds: int
    ) -> bool:
        """True if the viewer may comment now (and starts their slow-mode interval)."""
        ...


class DrawLog(Protocol):
    async def record(self, merchant_id: str, event: DrawHeld, candidates: Sequence[str]) -> None:
        """Append DrawHeld with the draw's row; AlreadyExistsError if the id is taken."""
        ...

    async def get(self, merchant_id: str, room_id: str, draw_id: str) -> tuple[DrawHeld, list[str]]:
        """The draw and its candidate list; NotFoundError if unknown."""
        ...


class PushKind(StrEnum):
    ROOM_STARTED = "room_started"
    ROOM_ENDED = "room_ended"
    LINEUP_CHANGED = "lineup_changed"
    PRODUCT_PINNED = "product_pinned"
    PRODUCT_UNPINNED = "product_unpinned"
    COMMENT = "comment"
    COMMENT_DELETED = "comment_deleted"
    MODERATION = "moderation"
    CHECKOUT_LINK = "checkout_link"
    DRAW_RESULT = "draw_result"
    CAMPAIGN_SCHEDULED = "campaign_scheduled"
    CAMPAIGN_STARTED = "campaign_started"
    CAMPAIGN_ENDED = "campaign_ended"
    COUPON_DROP = "coupon_drop"
    STOCK = "stock"
    VIEWERS = "viewers"


@dataclass(frozen=True)
class PushMessage:
    """One message to the viewers of a room (``to``: only to that viewer)."""

    kind: PushKind
    room_id: str
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    to: str = ""


class Push(Protocol):
    """Sends messages to every client of a room, on every replica; fire and forget (a
    client that was not connected misses it and reads the state when it connects)."""

    async def publish(self, merchant_id: str, messages: Sequence[PushMessage]) -> None: ...


@dataclass(frozen=True)
class CampaignView:
    campaign_id: str
    sku_id: str
    room_id: str
    state: str
    starts_at: datetime | None
    ends_at: datetime | None


class Campaigns(Protocol):
    """Promotion's flash-sale campaigns (gRPC promotion.v1)."""

    async def start(self, merchant_id: str, campaign_id: str, room_id: str) -> CampaignView:
        """Start the campaign if it sells in ``room_id`` (else a PreconditionFailedError)."""
        ...

    async def stop(self, merchant_id: str, campaign_id: str, room_id: str) -> CampaignView:
        """End the campaign if it sells in ``room_id`` (else a PreconditionFailedError)."""
        ...


class DueReminders(Protocol):
    """Reminders claimed for delivery (locked: no other replica delivers them meanwhile)."""

    @property
    def reminders(self) -> Sequence[Reminder]: ...

    async def settle(self, failures: Mapping[str, str], channel: str, at: datetime) -> None:
        """Record every claimed reminder as sent (with its ReminderSent event), except those
        in ``failures`` (reminder id -> error), which are retried later."""
        ...


class ReminderBook(Protocol):
    """Subscriptions and the reminders owed (Postgres)."""

    async def subscribe(
        self, merchant_id: str, target: SubscriptionTarget, target_id: str, viewer_id: str
    ) -> None: ...

    async def unsubscribe(
        self, merchant_id: str, target: SubscriptionTarget, target_id: str, viewer_id: str
    ) -> None: ...

    async def owe(self, conn: Any, room: Room, kind: ReminderKind) -> int:
        """Owe ``kind`` reminders of ``room`` to its subscribers and its host's, in the
        caller's transaction; each (subscriber, room, kind) is owed once, ever."""
        ...

    def claim_due(self, now: datetime, limit: int) -> AbstractAsyncContextManager[DueReminders]:
        """Claim up to ``limit`` reminders due for delivery until the block ends."""
        ...


class Notifier(Protocol):
    """A channel that delivers a reminder to its viewer (a webhook to the messaging
    gateway, an app push ...). Raises when it was not delivered; the reminder is retried."""

    @property
    def channel(self) -> str: ...

    async def send(self, reminder: Reminder) -> None: ...


@dataclass(frozen=True)
class RoomCampaign:
    campaign_id: str
    room_id: str
    sku_id: str
    left: int
    """Units not reserved yet, as far as the room has heard."""


class CampaignBook(Protocol):
    """Which room a campaign sells in, and its units reserved so far; written in the
    consumer's transaction (``conn``)."""

    async def remember(
        self,
        conn: Any,
        merchant_id: str,
        campaign_id: str,
        room_id: str,
        sku_id: str,
        quantity: int,
    ) -> None: ...

    async def reserve(
        self, conn: Any, merchant_id: str, campaign_id: str, units: int
    ) -> RoomCampaign | None:
        """Count ``units`` more reserved (negative: released); None for a campaign of no
        room."""
        ...

    async def sold_out(
        self, conn: Any, merchant_id: str, campaign_id: str
    ) -> RoomCampaign | None: ...
