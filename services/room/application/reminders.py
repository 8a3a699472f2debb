"""Start-stream reminders: subscriptions, owing reminders when a room's timer fires, and
delivering them through the notification channel."""

from __future__ import annotations

import asyncio

from services.kit.db import Connection
from services.kit.identity import Caller
from services.kit.logging import get_logger
from services.kit.timers import Timer
from services.room.application.ports import Clock, Notifier, ReminderBook, RoomRepository
from services.room.domain.reminders import ReminderKind, SubscriptionTarget
from services.room.domain.room import RoomState, RoomStateError, validate_room_id

log = get_logger(__name__)

_DUE_STATE = {ReminderKind.LEAD: RoomState.SCHEDULED, ReminderKind.LIVE: RoomState.LIVE}


class Reminders:
    def __init__(
        self,
        rooms: RoomRepository,
        book: ReminderBook,
        notifier: Notifier,
        *,
        clock: Clock,
        batch: int = 100,
    ) -> None:
        self._rooms = rooms
        self._book = book
        self._notifier = notifier
        self._clock = clock
        self._batch = batch

    async def subscribe(
        self, caller: Caller, merchant_id: str, target: SubscriptionTarget, target_id: str
    ) -> None:
        """A viewer subscribes to a room that has not ended, or to a host."""
        caller.ensure_can_see(merchant_id, f"{target.value} {target_id}")
        if target is SubscriptionTarget.ROOM:
            room = await self._rooms.load(merchant_id, validate_room_id(target_id))
            if room.state not in (RoomState.SCHEDULED, RoomState.LIVE):
                raise RoomStateError(f"room {target_id} is {room.state.value}")
        await self._book.subscribe(merchant_id, target, target_id, caller.subject)

    async def unsubscribe(
        self, caller: Caller, merchant_id: str, target: SubscriptionTarget, target_id: str
    ) -> None:
        caller.ensure_can_see(merchant_id, f"{target.value} {target_id}")
        await self._book.unsubscribe(merchant_id, target, target_id, caller.subject)

    async def on_timer(self, timer: Timer, conn: Connection) -> None:
        """A room's lead or live moment came: owe the reminders, if the room is still in
        the state the reminder is about (a cancelled room reminds nobody)."""
        kind = ReminderKind(str(timer.payload["kind"]))
        room = await self._rooms.load(timer.merchant_id, str(timer.payload["room_id"]))
        if room.state is not _DUE_STATE[kind]:
            return
        owed = await self._book.owe(conn, room, kind)
        log.info("reminders owed", room_id=room.room_id, kind=kind.value, count=owed)

    async def deliver_due(self) -> int:
        """Send one batch of due reminders; how many were claimed."""
        async with self._book.claim_due(self._clock(), self._batch) as due:
            reminders = list(due.reminders)
            results = await asyncio.gather(
                *(self._notifier.send(r) for r in reminders), return_exceptions=True
            )
            failures = {
                r.reminder_id: repr(result)
                for r, result in zip(reminders, results, strict=True)
                if isinstance(result, BaseException)
            }
            if failures:
                log.warning("reminders not delivered", count=len(failures))
            await due.settle(failures, self._notifier.channel, self._clock())
        return len(reminders)
