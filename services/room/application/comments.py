"""Posting, reading and moderating comments; a "comment to buy" gets its viewer a checkout
link for the pinned product."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode
from uuid import uuid4

from services.kit.identity import Caller
from services.room.application.ports import (
    Clock,
    CommentFeed,
    CommentLog,
    Push,
    PushKind,
    PushMessage,
    RoomRepository,
    StoredComment,
)
from services.room.application.rooms import ensure_can_moderate
from services.room.domain.comments import (
    CommentPosted,
    PostComment,
    SlowModeError,
    check_comment,
    is_buy_request,
)
from services.room.domain.room import validate_room_id


class Comments:
    def __init__(
        self,
        rooms: RoomRepository,
        log: CommentLog,
        feed: CommentFeed,
        push: Push,
        *,
        clock: Clock,
        buy_keywords: Sequence[str],
        checkout_url_base: str,
    ) -> None:
        self._rooms = rooms
        self._log = log
        self._feed = feed
        self._push = push
        self._clock = clock
        self._buy_keywords = tuple(buy_keywords)
        self._checkout = checkout_url_base

    async def post(self, command: PostComment) -> StoredComment:
        """Checked against the room (live, not muted, size, banned words), then slow mode;
        durable before it is shown to anyone."""
        room = await self._rooms.load(command.merchant_id, validate_room_id(command.room_id))
        text = check_comment(room, command)
        interval = room.moderation.slow_mode_seconds
        if not await self._feed.claim_turn(
            command.merchant_id, command.room_id, command.viewer_id, interval
        ):
            raise SlowModeError(f"slow mode: one comment every {interval} seconds")
        event = CommentPosted(command.room_id, uuid4().hex, command.viewer_id, text, self._clock())
        await self._log.post(command.merchant_id, event)
        comment = StoredComment(event.comment_id, event.viewer_id, text, event.posted_at)
        await self._feed.add(command.merchant_id, command.room_id, comment)
        messages = [
            PushMessage(
                PushKind.COMMENT,
                command.room_id,
                event.posted_at,
                {"id": comment.comment_id, "viewer_id": comment.viewer_id, "text": text},
            )
        ]
        if room.pinned_sku is not None and is_buy_request(text, self._buy_keywords):
            link = (
                self._checkout
                + "?"
                + urlencode(
                    {
                        "merchant": command.merchant_id,
                        "room": command.room_id,
                        "sku": room.pinned_sku,
                    }
                )
            )
            messages.append(
                PushMessage(
                    PushKind.CHECKOUT_LINK,
                    command.room_id,
                    event.posted_at,
                    {"sku_id": room.pinned_sku, "url": link},
                    to=command.viewer_id,
                )
            )
        await self._push.publish(command.merchant_id, messages)
        return comment

    async def recent(
        self, caller: Caller, merchant_id: str, room_id: str, limit: int
    ) -> list[StoredComment]:
        caller.ensure_can_see(merchant_id, f"room {room_id}")
        return await self._feed.recent(merchant_id, validate_room_id(room_id), limit)

    async def delete(
        self, caller: Caller, merchant_id: str, room_id: str, comment_id: str
    ) -> StoredComment:
        room = await self._rooms.load(merchant_id, validate_room_id(room_id))
        ensure_can_moderate(caller, room)
        deleted = await self._log.delete(merchant_id, room_id, comment_id, caller.subject)
        await self._feed.remove(merchant_id, room_id, comment_id)
        await self._push.publish(
            merchant_id,
            [PushMessage(PushKind.COMMENT_DELETED, room_id, self._clock(), {"id": comment_id})],
        )
        return deleted
