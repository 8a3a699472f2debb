"""A live room: its schedule, its life (scheduled -> live -> ended, or cancelled), its
product line-up with the pinned product, and its moderation settings.

Every change is an event; ``Room.apply`` is the only way state moves, so replaying a room's
events rebuilds it exactly. Decisions take the time (``now``) as an argument: no clock here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from services.kit.errors import (
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
)
from services.kit.tenancy import validate_id, validate_merchant_id

CHANNELS = frozenset({"mini_program", "h5", "app"})
MAX_TITLE_LENGTH = 100
MAX_URL_LENGTH = 500
MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(hours=24)
MAX_LINEUP = 500
MAX_BANNED_WORDS = 500
MAX_BANNED_WORD_LENGTH = 50
MAX_SLOW_MODE_SECONDS = 3600
MAX_REASON_LENGTH = 200
SCHEDULE_TOLERANCE = timedelta(seconds=60)
"""A start this little in the past still counts as "now" (client clocks drift)."""


class InvalidRoomError(InvalidArgumentError):
    pass


class ScheduleInPastError(InvalidArgumentError):
    pass


class RoomNotFoundError(NotFoundError):
    pass


class RoomStateError(PreconditionFailedError):
    """The room's state does not allow the action (pin in an ended room, start it twice)."""


class HostDoubleBookedError(PreconditionFailedError):
    """The host already has a scheduled or live room whose slot overlaps this one."""


class ProductNotInLineupError(PreconditionFailedError):
    pass


class RoomState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


BOOKED_STATES = frozenset({RoomState.SCHEDULED, RoomState.LIVE})
"""States in which a room holds its host's slot (no other room of the host may overlap)."""


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRoom:
    merchant_id: str
    room_id: str
    host_id: str
    title: str
    cover_url: str
    channels: tuple[str, ...]
    starts_at: datetime | None
    """None: now."""
    duration: timedelta


@dataclass(frozen=True)
class RescheduleRoom:
    starts_at: datetime
    duration: timedelta | None = None
    """None: keep the room's planned duration."""


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomScheduled:
    room_id: str
    host_id: str
    title: str
    cover_url: str
    channels: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RoomRescheduled:
    room_id: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RoomCancelled:
    room_id: str
    reason: str


@dataclass(frozen=True)
class RoomStarted:
    room_id: str
    host_id: str
    started_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RoomEnded:
    room_id: str
    ended_at: datetime
    peak_viewers: int = 0
    unique_viewers: int = 0
    watched_seconds: int = 0


@dataclass(frozen=True)
class ProductAddedToLineup:
    room_id: str
    sku_id: str
    position: int


@dataclass(frozen=True)
class ProductRemovedFromLineup:
    room_id: str
    sku_id: str


@dataclass(frozen=True)
class LineupReordered:
    room_id: str
    sku_ids: tuple[str, ...]


@dataclass(frozen=True)
class ProductShelfChanged:
    room_id: str
    sku_id: str
    on_shelf: bool


@dataclass(frozen=True)
class ProductPinned:
    room_id: str
    sku_id: str


@dataclass(frozen=True)
class ProductUnpinned:
    room_id: str
    sku_id: str


@dataclass(frozen=True)
class UserMuted:
    room_id: str
    user_id: str
    reason: str


@dataclass(frozen=True)
class UserUnmuted:
    room_id: str
    user_id: str


@dataclass(frozen=True)
class BannedWordsChanged:
    room_id: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class SlowModeChanged:
    room_id: str
    interval_seconds: int


RoomEvent = (
    RoomScheduled
    | RoomRescheduled
    | RoomCancelled
    | RoomStarted
    | RoomEnded
    | ProductAddedToLineup
    | ProductRemovedFromLineup
    | LineupReordered
    | ProductShelfChanged
    | ProductPinned
    | ProductUnpinned
    | UserMuted
    | UserUnmuted
    | BannedWordsChanged
    | SlowModeChanged
)


# -- state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineupItem:
    sku_id: str
    on_shelf: bool = True


@dataclass(frozen=True)
class Moderation:
    muted: frozenset[str] = frozenset()
    banned_words: tuple[str, ...] = ()
    slow_mode_seconds: int = 0


@dataclass(frozen=True)
class ViewerFigures:
    """What presence counted over the stream (recorded when the room ends)."""

    peak_viewers: int = 0
    unique_viewers: int = 0
    watched_seconds: int = 0


def validate_room_id(room_id: str) -> str:
    return validate_id(room_id, "room id")


def validate_sku_id(sku_id: str) -> str:
    return validate_id(sku_id, "SKU id")


def _validate_url(url: str) -> str:
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRoomError(f"cover_url must be an http(s) URL of at most {MAX_URL_LENGTH}")
    return url


def _validate_channels(channels: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(channels) - CHANNELS)
    if not channels or unknown:
        raise InvalidRoomError(
            f"channels must be a non-empty subset of {sorted(CHANNELS)}; unknown: {unknown}"
        )
    return tuple(dict.fromkeys(channels))


def _validate_duration(duration: timedelta) -> timedelta:
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise InvalidRoomError("a room lasts between 1 minute and 24 hours")
    return duration


def _validate_start(starts_at: datetime, now: datetime) -> datetime:
    if starts_at.tzinfo is None:
        raise InvalidRoomError("starts_at needs a time zone")
    if starts_at < now - SCHEDULE_TOLERANCE:
        raise ScheduleInPastError(
            f"starts_at {starts_at.isoformat()} is in the past (now {now.isoformat()})"
        )
    return max(starts_at, now)


def schedule_room(command: ScheduleRoom, now: datetime) -> RoomScheduled:
    """The first event of a room: checks everything a schedule must satisfy on its own
    (overlap with the host's other rooms is the store's check: it needs them all)."""
    validate_merchant_id(command.merchant_id)
    validate_room_id(command.room_id)
    validate_id(command.host_id, "host id")
    title = command.title.strip()
    if not title or len(title) > MAX_TITLE_LENGTH:
        raise InvalidRoomError(f"a title is 1 to {MAX_TITLE_LENGTH} characters")
    starts_at = _validate_start(command.starts_at or now, now)
    return RoomScheduled(
        room_id=command.room_id,
        host_id=command.host_id,
        title=title,
        cover_url=_validate_url(command.cover_url),
        channels=_validate_channels(command.channels),
        starts_at=starts_at,
        ends_at=starts_at + _validate_duration(command.duration),
    )


@dataclass(frozen=True)
class Room:
    merchant_id: str
    room_id: str
    host_id: str = ""
    title: str = ""
    cover_url: str = ""
    channels: tuple[str, ...] = ()
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    state: RoomState = RoomState.SCHEDULED
    started_at: datetime | None = None
    ended_at: datetime | None = None
    lineup: tuple[LineupItem, ...] = ()
    pinned_sku: str | None = None
    moderation: Moderation = field(default_factory=Moderation)
    figures: ViewerFigures = field(default_factory=ViewerFigures)
    version: int = 0

    @staticmethod
    def stream_id(merchant_id: str, room_id: str) -> str:
        """Unambiguous because a merchant id never contains ':'."""
        return f"room:{validate_merchant_id(merchant_id)}:{room_id}"

    @classmethod
    def replay(cls, merchant_id: str, room_id: str, events: Iterable[RoomEvent]) -> Room:
        room = cls(merchant_id=merchant_id, room_id=room_id)
        for event in events:
            room = room.apply(event)
        return room

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def duration(self) -> timedelta:
        assert self.starts_at is not None
        assert self.ends_at is not None
        return self.ends_at - self.starts_at

    @property
    def is_live(self) -> bool:
        return self.state is RoomState.LIVE

    def product(self, sku_id: str) -> LineupItem | None:
        return next((item for item in self.lineup if item.sku_id == sku_id), None)

    # -- decisions ----------------------------------------------------------------------

    def _require(self, *states: RoomState, action: str) -> None:
        if self.state not in states:
            raise RoomStateError(f"cannot {action}: room {self.room_id} is {self.state.value}")

    def reschedule(self, command: RescheduleRoom, now: datetime) -> RoomRescheduled:
        self._require(RoomState.SCHEDULED, action="reschedule")
        starts_at = _validate_start(command.starts_at, now)
        duration = _validate_duration(command.duration or self.duration)
        return RoomRescheduled(self.room_id, starts_at, starts_at + duration)

    def cancel(self, reason: str) -> RoomCancelled:
        self._require(RoomState.SCHEDULED, action="cancel")
        return RoomCancelled(self.room_id, reason.strip()[:MAX_REASON_LENGTH])

    def start(self, now: datetime) -> RoomStarted:
        """Go live. A room started early keeps its planned end; one started after its
        planned end gets its planned duration from now."""
        self._require(RoomState.SCHEDULED, action="start")
        assert self.ends_at is not None
        ends_at = self.ends_at if self.ends_at > now else now + self.duration
        return RoomStarted(self.room_id, self.host_id, now, ends_at)

    def end(self, now: datetime, figures: ViewerFigures) -> RoomEnded:
        self._require(RoomState.LIVE, action="end")
        return RoomEnded(
            self.room_id,
            now,
            peak_viewers=figures.peak_viewers,
            unique_viewers=figures.unique_viewers,
            watched_seconds=figures.watched_seconds,
        )

    def _require_open(self, action: str) -> None:
        self._require(RoomState.SCHEDULED, RoomState.LIVE, action=action)

    def add_product(self, sku_id: str) -> list[RoomEvent]:
        self._require_open("change the line-up")
        validate_sku_id(sku_id)
        if self.product(sku_id) is not None:
            return []
        if len(self.lineup) >= MAX_LINEUP:
            raise InvalidRoomError(f"a line-up holds at most {MAX_LINEUP} products")
        return [ProductAddedToLineup(self.room_id, sku_id, len(self.lineup))]

    def remove_product(self, sku_id: str) -> list[RoomEvent]:
        self._require_open("change the line-up")
        if self.product(sku_id) is None:
            return []
        events: list[RoomEvent] = []
        if self.pinned_sku == sku_id:
            events.append(ProductUnpinned(self.room_id, sku_id))
        events.append(ProductRemovedFromLineup(self.room_id, sku_id))
        return events

    def reorder(self, sku_ids: Sequence[str]) -> list[RoomEvent]:
        self._require_open("change the line-up")
        current = [item.sku_id for item in self.lineup]
        if sorted(sku_ids) != sorted(current) or len(set(sku_ids)) != len(sku_ids):
            raise InvalidRoomError("a new order names every product of the line-up once")
        if list(sku_ids) == current:
            return []
        return [LineupReordered(self.room_id, tuple(sku_ids))]

    def set_shelf(self, sku_id: str, on_shelf: bool) -> list[RoomEvent]:
        self._require_open("change the shelf")
        item = self._product_or_fail(sku_id)
        if item.on_shelf == on_shelf:
            return []
        events: list[RoomEvent] = []
        if not on_shelf and self.pinned_sku == sku_id:
            events.append(ProductUnpinned(self.room_id, sku_id))
        events.append(ProductShelfChanged(self.room_id, sku_id, on_shelf))
        return events

    def pin(self, sku_id: str) -> list[RoomEvent]:
        """Only a live room pins, and only a product of its line-up that is on the shelf."""
        self._require(RoomState.LIVE, action="pin a product")
        item = self._product_or_fail(sku_id)
        if not item.on_shelf:
            raise ProductNotInLineupError(f"product {sku_id} is off the shelf")
        if self.pinned_sku == sku_id:
            return []
        events: list[RoomEvent] = []
        if self.pinned_sku is not None:
            events.append(ProductUnpinned(self.room_id, self.pinned_sku))
        events.append(ProductPinned(self.room_id, sku_id))
        return events

    def unpin(self) -> list[RoomEvent]:
        self._require(RoomState.LIVE, action="unpin")
        return [] if self.pinned_sku is None else [ProductUnpinned(self.room_id, self.pinned_sku)]

    def _product_or_fail(self, sku_id: str) -> LineupItem:
        item = self.product(sku_id)
        if item is None:
            raise ProductNotInLineupError(f"product {sku_id} is not in the line-up")
        return item

    def mute(self, user_id: str, reason: str) -> list[RoomEvent]:
        self._require_open("moderate")
        validate_id(user_id, "user id")
        if user_id in self.moderation.muted:
            return []
        return [UserMuted(self.room_id, user_id, reason.strip()[:MAX_REASON_LENGTH])]

    def unmute(self, user_id: str) -> list[RoomEvent]:
        self._require_open("moderate")
        return [UserUnmuted(self.room_id, user_id)] if user_id in self.moderation.muted else []

    def set_banned_words(self, words: Sequence[str]) -> list[RoomEvent]:
        self._require_open("moderate")
        cleaned = tuple(dict.fromkeys(w.strip().casefold() for w in words if w.strip()))
        if len(cleaned) > MAX_BANNED_WORDS or any(len(w) > MAX_BANNED_WORD_LENGTH for w in cleaned):
            raise InvalidRoomError(
                f"at most {MAX_BANNED_WORDS} banned words of {MAX_BANNED_WORD_LENGTH} characters"
            )
        if cleaned == self.moderation.banned_words:
            return []
        return [BannedWordsChanged(self.room_id, cleaned)]

    def set_slow_mode(self, interval_seconds: int) -> list[RoomEvent]:
        self._require_open("moderate")
        if not 0 <= interval_seconds <= MAX_SLOW_MODE_SECONDS:
            raise InvalidRoomError(f"slow mode is 0 to {MAX_SLOW_MODE_SECONDS} seconds")
        if interval_seconds == self.moderation.slow_mode_seconds:
            return []
        return [SlowModeChanged(self.room_id, interval_seconds)]

    # -- evolution ----------------------------------------------------------------------

    def apply(self, event: RoomEvent) -> Room:
        room = replace(self, version=self.version + 1)
        moderation = room.moderation
        match event:
            case RoomScheduled():
                return replace(
                    room,
                    host_id=event.host_id,
                    title=event.title,
                    cover_url=event.cover_url,
                    channels=event.channels,
                    starts_at=event.starts_at,
                    ends_at=event.ends_at,
                    state=RoomState.SCHEDULED,
                )
            case RoomRescheduled():
                return replace(room, starts_at=event.starts_at, ends_at=event.ends_at)
            case RoomCancelled():
                return replace(room, state=RoomState.CANCELLED)
            case RoomStarted():
                return replace(
                    room, state=RoomState.LIVE, started_at=event.started_at, ends_at=event.ends_at
                )
            case RoomEnded():
                return replace(
                    room,
                    state=RoomState.ENDED,
                    ended_at=event.ended_at,
                    pinned_sku=None,
                    figures=ViewerFigures(
                        event.peak_viewers, event.unique_viewers, event.watched_seconds
                    ),
                )
            case ProductAddedToLineup():
                return replace(room, lineup=(*room.lineup, LineupItem(event.sku_id)))
            case ProductRemovedFromLineup():
                return replace(
                    room, lineup=tuple(i for i in room.lineup if i.sku_id != event.sku_id)
                )
            case LineupReordered():
                by_sku = {item.sku_id: item for item in room.lineup}
                return replace(room, lineup=tuple(by_sku[sku] for sku in event.sku_ids))
            case ProductShelfChanged():
                return replace(
                    room,
                    lineup=tuple(
                        replace(i, on_shelf=event.on_shelf) if i.sku_id == event.sku_id else i
                        for i in room.lineup
                    ),
                )
            case ProductPinned():
                return replace(room, pinned_sku=event.sku_id)
            case ProductUnpinned():
                return replace(room, pinned_sku=None)
            case UserMuted():
                muted = moderation.muted | {event.user_id}
                return replace(room, moderation=replace(moderation, muted=muted))
            case UserUnmuted():
                muted = moderation.muted - {event.user_id}
                return replace(room, moderation=replace(moderation, muted=muted))
            case BannedWordsChanged():
                return replace(room, moderation=replace(moderation, banned_words=event.words))
            case SlowModeChanged():
                return replace(
                    room, moderation=replace(moderation, slow_mode_seconds=event.interval_seconds)
                )
        raise TypeError(f"not a room event: {event!r}")
