"""Comments in a live room: who may post what, and the "comment to buy" keywords."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.kit.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    PreconditionFailedError,
    ResourceExhaustedError,
)
from services.kit.tenancy import validate_merchant_id
from services.room.domain.room import Room, RoomState

MAX_COMMENT_LENGTH = 300


class InvalidCommentError(InvalidArgumentError):
    pass


class BannedWordError(InvalidArgumentError):
    pass


class MutedError(PermissionDeniedError):
    pass


class SlowModeError(ResourceExhaustedError):
    pass


class CommentsClosedError(PreconditionFailedError):
    pass


@dataclass(frozen=True)
class PostComment:
    merchant_id: str
    room_id: str
    viewer_id: str
    text: str


@dataclass(frozen=True)
class CommentPosted:
    room_id: str
    comment_id: str
    viewer_id: str
    text: str
    posted_at: datetime


@dataclass(frozen=True)
class CommentDeleted:
    room_id: str
    comment_id: str
    deleted_by: str


CommentEvent = CommentPosted | CommentDeleted


def comment_stream_id(merchant_id: str, room_id: str, comment_id: str) -> str:
    return f"comment:{validate_merchant_id(merchant_id)}:{room_id}:{comment_id}"


def normalise(text: str) -> str:
    """What banned words and keywords are matched against: NFKC, case-folded, trimmed
    (so full-width letters and case tricks do not slip past)."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def check_comment(room: Room, command: PostComment) -> str:
    """The text to post, or the reason the room refuses it. Slow mode is checked by the
    caller (it needs the time of the viewer's last comment, kept outside the room)."""
    if room.state is not RoomState.LIVE:
        raise CommentsClosedError(f"room {room.room_id} is {room.state.value}: comments closed")
    if command.viewer_id in room.moderation.muted:
        raise MutedError("you are muted in this room")
    text = command.text.strip()
    if not text or len(text) > MAX_COMMENT_LENGTH or not text.isprintable():
        raise InvalidCommentError(
            f"a comment is 1 to {MAX_COMMENT_LENGTH} printable characters on one line"
        )
    folded = normalise(text)
    if any(word in folded for word in room.moderation.banned_words):
        raise BannedWordError("the comment contains a word banned in this room")
    return text


def is_buy_request(text: str, keywords: Iterable[str]) -> bool:
    """A "comment to buy": the whole comment is one of the keywords (e.g. "buy", "想要")."""
    folded = normalise(text)
    return any(folded == normalise(keyword) for keyword in keywords)
