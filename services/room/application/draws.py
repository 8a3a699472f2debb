"""Lucky draws held by the room's host or operators, announced to the room."""

from __future__ import annotations

import secrets

from services.kit.identity import Caller
from services.room.application.ports import (
    Clock,
    CommentLog,
    DrawLog,
    Push,
    PushKind,
    PushMessage,
    RoomRepository,
)
from services.room.application.rooms import ensure_can_run
from services.room.application.viewers import Viewers
from services.room.domain.draws import (
    DrawHeld,
    DrawPool,
    HoldDraw,
    candidate_list,
    hold_draw,
    validate_draw,
)
from services.room.domain.room import RoomStateError, validate_room_id


class Draws:
    def __init__(
        self,
        rooms: RoomRepository,
        viewers: Viewers,
        comments: CommentLog,
        log: DrawLog,
        push: Push,
        *,
        clock: Clock,
    ) -> None:
        self._rooms = rooms
        self._viewers = viewers
        self._comments = comments
        self._log = log
        self._push = push
        self._clock = clock

    async def hold(self, caller: Caller, command: HoldDraw) -> DrawHeld:
        """Among the viewers present now, or those who commented the keyword; N distinct
        winners from a recorded seed."""
        validate_draw(command)
        room = await self._rooms.load(command.merchant_id, validate_room_id(command.room_id))
        ensure_can_run(caller, room)
        if not room.is_live:
            raise RoomStateError(f"room {room.room_id} is {room.state.value}: draws need it live")
        if command.pool is DrawPool.PRESENT:
            found = await self._viewers.present(command.merchant_id, command.room_id)
        else:
            found = await self._comments.commenters(
                command.merchant_id, command.room_id, command.keyword
            )
        candidates = candidate_list(found)
        seed = command.seed or secrets.token_hex(16)
        event = hold_draw(command, candidates, seed, self._clock())
        await self._log.record(command.merchant_id, event, candidates)
        await self._push.publish(
            command.merchant_id,
            [
                PushMessage(
                    PushKind.DRAW_RESULT,
                    command.room_id,
                    event.held_at,
                    {
                        "draw_id": event.draw_id,
                        "prize": event.prize,
                        "winners": list(event.winners),
                        "candidate_count": event.candidate_count,
                        "candidates_sha256": event.candidates_sha256,
                        "seed": event.seed,
                    },
                )
            ],
        )
        return event

    async def get(
        self, caller: Caller, merchant_id: str, room_id: str, draw_id: str
    ) -> tuple[DrawHeld, list[str]]:
        caller.ensure_can_see(merchant_id, f"room {room_id}")
        return await self._log.get(merchant_id, room_id, draw_id)
