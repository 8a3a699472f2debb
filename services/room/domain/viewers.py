"""Viewers in a room: a visit starts with ViewerJoined and ends with ViewerLeft.

A visit is its own stream (``visit:<merchant>:<room>:<visit>``), so a join storm appends
thousands of new streams that never contend with each other or with the room's stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.kit.errors import InvalidArgumentError, PreconditionFailedError
from services.kit.tenancy import validate_id, validate_merchant_id
from services.room.domain.room import CHANNELS

ENTRIES = frozenset({"", "share_link", "invitation_card"})
MAX_SHARE_CODE_LENGTH = 64
MAX_DEVICE_ID_LENGTH = 128


class InvalidJoinError(InvalidArgumentError):
    pass


class RoomNotLiveError(PreconditionFailedError):
    pass


class NotInRoomError(PreconditionFailedError):
    """A heartbeat from a viewer presence does not know (timed out): join again."""


class LeaveReason(StrEnum):
    LEFT = "left"
    TIMED_OUT = "timed_out"
    ROOM_ENDED = "room_ended"


@dataclass(frozen=True)
class JoinRoom:
    merchant_id: str
    room_id: str
    viewer_id: str
    channel: str
    share_code: str = ""
    entry: str = ""
    device_id: str = ""


@dataclass(frozen=True)
class ViewerJoined:
    room_id: str
    viewer_id: str
    visit_id: str
    channel: str
    share_code: str
    entry: str
    device_id: str
    joined_at: datetime


@dataclass(frozen=True)
class ViewerLeft:
    room_id: str
    viewer_id: str
    visit_id: str
    watched_seconds: int
    left_at: datetime
    reason: LeaveReason


VisitEvent = ViewerJoined | ViewerLeft


def visit_stream_id(merchant_id: str, room_id: str, visit_id: str) -> str:
    return f"visit:{validate_merchant_id(merchant_id)}:{room_id}:{visit_id}"


def validate_join(command: JoinRoom) -> JoinRoom:
    """A join that names a known channel and entry; a share code only with an entry that
    carries one, and an entry only with its code."""
    validate_merchant_id(command.merchant_id)
    validate_id(command.room_id, "room id")
    validate_id(command.viewer_id, "viewer id")
    if command.channel not in CHANNELS:
        raise InvalidJoinError(f"channel must be one of {sorted(CHANNELS)}")
    if command.entry not in ENTRIES:
        raise InvalidJoinError(f"entry must be one of {sorted(ENTRIES)}")
    if bool(command.entry) != bool(command.share_code):
        raise InvalidJoinError("a share_code comes with its entry, and an entry with its code")
    if command.share_code:
        validate_id(command.share_code, "share code")
    if len(command.device_id) > MAX_DEVICE_ID_LENGTH or not command.device_id.isprintable():
        raise InvalidJoinError(f"device_id is at most {MAX_DEVICE_ID_LENGTH} printable characters")
    return command


@dataclass(frozen=True)
class ViewerFiguresNow:
    """Presence figures of a room at one moment."""

    concurrent: int
    unique: int
    peak: int
    watched_seconds: int
