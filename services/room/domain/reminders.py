"""Start-stream reminders (开播提醒): viewers subscribe to a room or to a host, and get a
reminder some time before a room starts (``lead``) and when it goes live (``live``),
exactly once per subscriber, room and kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.kit.tenancy import validate_merchant_id


class ReminderKind(StrEnum):
    LEAD = "lead"
    LIVE = "live"


class SubscriptionTarget(StrEnum):
    ROOM = "room"
    HOST = "host"


@dataclass(frozen=True)
class Reminder:
    """One reminder to one viewer; ``reminder_id`` is stable, an idempotency key for the
    channel that delivers it."""

    merchant_id: str
    room_id: str
    viewer_id: str
    kind: ReminderKind
    host_id: str
    title: str
    starts_at: datetime

    @property
    def reminder_id(self) -> str:
        return f"{self.merchant_id}:{self.room_id}:{self.viewer_id}:{self.kind.value}"


@dataclass(frozen=True)
class ReminderSubscribed:
    target: SubscriptionTarget
    target_id: str
    viewer_id: str
    subscribed_at: datetime


def subscription_stream_id(
    merchant_id: str, target: SubscriptionTarget, target_id: str, viewer_id: str
) -> str:
    return f"subscription:{merchant_id}:{target.value}:{target_id}:{viewer_id}"


@dataclass(frozen=True)
class ReminderSent:
    room_id: str
    viewer_id: str
    kind: ReminderKind
    channel: str
    sent_at: datetime


def reminder_stream_id(merchant_id: str, room_id: str, viewer_id: str, kind: str) -> str:
    """One stream per reminder, so appending its one event at version 1 is itself the
    exactly-once guard."""
    return f"reminder:{validate_merchant_id(merchant_id)}:{room_id}:{viewer_id}:{kind}"
