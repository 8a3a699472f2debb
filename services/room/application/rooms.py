"""Room use cases: schedule, reschedule, cancel, go live, end; line-up, pinning,
moderation. Each loads the room, lets it decide, saves the events, then tells viewers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.kit.errors import PermissionDeniedError
from services.kit.eventstore import retry_on_conflict
from services.kit.identity import Caller, Role
from services.room.application.ports import (
    Clock,
    Presence,
    Push,
    RoomRepository,
    StreamingProvider,
    StreamUrls,
)
from services.room.application.push import room_messages
from services.room.application.viewers import Viewers
from services.room.domain.room import (
    RescheduleRoom,
    Room,
    RoomEvent,
    ScheduleRoom,
    ViewerFigures,
    schedule_room,
    validate_room_id,
)

MANAGERS = frozenset({Role.OPERATOR, Role.MERCHANT_ADMIN})
"""Who runs any room of their merchant; a host runs only their own rooms."""


def ensure_can_run(caller: Caller, room: Room) -> None:
    """The room's host, or an operator or merchant admin of its merchant."""
    caller.ensure_can_see(room.merchant_id, f"room {room.room_id}")
    if caller.roles & MANAGERS:
        return
    if Role.HOST in caller.roles and caller.subject == room.host_id:
        return
    raise PermissionDeniedError(
        f"only room {room.room_id}'s host, its operators and merchant admins may do this"
    )


def ensure_can_moderate(caller: Caller, room: Room) -> None:
    """Moderation (场控) is for operators and merchant admins."""
    caller.ensure_can_see(room.merchant_id, f"room {room.room_id}")
    if not caller.roles & MANAGERS:
        raise PermissionDeniedError("moderation needs the operator or merchant-admin role")


Decide = Callable[[Room], Sequence[RoomEvent]]


class Rooms:
    def __init__(
        self,
        repository: RoomRepository,
        *,
        presence: Presence,
        viewers: Viewers,
        push: Push,
        streaming: StreamingProvider,
        clock: Clock,
    ) -> None:
        self._rooms = repository
        self._presence = presence
        self._viewers = viewers
        self._push = push
        self._streaming = streaming
        self._clock = clock

    async def schedule(self, caller: Caller, command: ScheduleRoom) -> Room:
        """Operators and merchant admins schedule any host; a host schedules themselves."""
        caller.ensure_can_see(command.merchant_id, "merchant")
        if not caller.roles & MANAGERS and not (
            Role.HOST in caller.roles and caller.subject == command.host_id
        ):
            raise PermissionDeniedError(
                "scheduling needs the operator or merchant-admin role, or a host for themselves"
            )
        return await self._rooms.create(command.merchant_id, schedule_room(command, self._clock()))

    async def get(self, caller: Caller, merchant_id: str, room_id: str) -> Room:
        caller.ensure_can_see(merchant_id, f"room {room_id}")
        return await self._rooms.load(merchant_id, validate_room_id(room_id))

    async def moderated(self, caller: Caller, merchant_id: str, room_id: str) -> Room:
        """The room, for its moderators (with the muted users and banned words)."""
        room = await self.get(caller, merchant_id, room_id)
        ensure_can_moderate(caller, room)
        return room

    async def stream_urls(self, caller: Caller, merchant_id: str, room_id: str) -> StreamUrls:
        room = await self.get(caller, merchant_id, room_id)
        ensure_can_run(caller, room)
        return self._streaming.urls(merchant_id, room_id)

    def play_urls(self, merchant_id: str, room_id: str) -> dict[str, str]:
        return dict(self._streaming.urls(merchant_id, room_id).play_urls)

    async def _change(
        self,
        caller: Caller,
        merchant_id: str,
        room_id: str,
        decide: Decide,
        authorize: Callable[[Caller, Room], None] = ensure_can_run,
    ) -> Room:
        validate_room_id(room_id)

        async def attempt() -> tuple[Room, Sequence[RoomEvent]]:
            room = await self._rooms.load(merchant_id, room_id)
            authorize(caller, room)
            events = decide(room)
            return await self._rooms.save(room, events), events

        caller.ensure_can_see(merchant_id, f"room {room_id}")
        room, events = await retry_on_conflict(attempt)
        if events:
            await self._push.publish(merchant_id, room_messages(room, events, self._clock()))
        return room

    async def reschedule(
        self, caller: Caller, merchant_id: str, room_id: str, command: RescheduleRoom
    ) -> Room:
        return await self._change(
            caller, merchant_id, room_id, lambda r: [r.reschedule(command, self._clock())]
        )

    async def cancel(self, caller: Caller, merchant_id: str, room_id: str, reason: str) -> Room:
        return await self._change(caller, merchant_id, room_id, lambda r: [r.cancel(reason)])

    async def start(self, caller: Caller, merchant_id: str, room_id: str) -> Room:
        room = await self._change(caller, merchant_id, room_id, lambda r: [r.start(self._clock())])
        await self._presence.open(merchant_id, room_id)
        return room

    async def end(self, caller: Caller, merchant_id: str, room_id: str) -> Room:
        """Joins are refused first; everyone present leaves (ViewerLeft, room_ended); then
        the room ends with the figures presence counted."""
        room = await self.get(caller, merchant_id, room_id)
        ensure_can_run(caller, room)
        room.end(self._clock(), ViewerFigures())  # refuse early if it is not live
        await self._presence.close(merchant_id, room_id)
        await self._viewers.empty(merchant_id, room_id)
        now = self._clock()
        counted = await self._viewers.figures(merchant_id, room_id)
        figures = ViewerFigures(counted.peak, counted.unique, counted.watched_seconds)
        return await self._change(caller, merchant_id, room_id, lambda r: [r.end(now, figures)])

    async def add_product(self, caller: Caller, merchant_id: str, room_id: str, sku: str) -> Room:
        return await self._change(caller, merchant_id, room_id, lambda r: r.add_product(sku))

    async def remove_product(
        self, caller: Caller, merchant_id: str, room_id: str, sku: str
    ) -> Room:
        return await self._change(caller, merchant_id, room_id, lambda r: r.remove_product(sku))

    async def reorder(
        self, caller: Caller, merchant_id: str, room_id: str, skus: Sequence[str]
    ) -> Room:
        return await self._change(caller, merchant_id, room_id, lambda r: r.reorder(skus))

    async def set_shelf(
        self, caller: Caller, merchant_id: str, room_id: str, sku: str, on_shelf: bool
    ) -> Room:
        return await self._change(
            caller, merchant_id, room_id, lambda r: r.set_shelf(sku, on_shelf)
        )

    async def pin(self, caller: Caller, merchant_id: str, room_id: str, sku: str) -> Room:
        return await self._change(caller, merchant_id, room_id, lambda r: r.pin(sku))

    async def unpin(self, caller: Caller, merchant_id: str, room_id: str) -> Room:
        return await self._change(caller, merchant_id, room_id, lambda r: r.unpin())

    async def mute(
        self, caller: Caller, merchant_id: str, room_id: str, user_id: str, reason: str
    ) -> Room:
        return await self._change(
            caller, merchant_id, room_id, lambda r: r.mute(user_id, reason), ensure_can_moderate
        )

    async def unmute(self, caller: Caller, merchant_id: str, room_id: str, user_id: str) -> Room:
        return await self._change(
            caller, merchant_id, room_id, lambda r: r.unmute(user_id), ensure_can_moderate
        )

    async def set_banned_words(
        self, caller: Caller, merchant_id: str, room_id: str, words: Sequence[str]
    ) -> Room:
        return await self._change(
            caller, merchant_id, room_id, lambda r: r.set_banned_words(words), ensure_can_moderate
        )

    async def set_slow_mode(
        self, caller: Caller, merchant_id: str, room_id: str, seconds: int
    ) -> Room:
        return await self._change(
            caller, merchant_id, room_id, lambda r: r.set_slow_mode(seconds), ensure_can_moderate
        )
