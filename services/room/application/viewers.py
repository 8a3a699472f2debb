"""Viewers joining, staying and leaving a live room.

A join is decided by presence (Redis, one pipeline for a burst of joins) and acknowledged
only once its ViewerJoined is durable (group commit); a join whose event could not be
written is taken back out of presence, so presence never counts a visit the event store
does not know. A viewer already present joining again is a heartbeat, not a new visit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

from services.kit.batching import MicroBatcher
from services.kit.errors import ConcurrencyError
from services.kit.logging import get_logger
from services.room.application.ports import (
    Clock,
    Departure,
    JoinAttempt,
    JoinDecision,
    JoinOutcome,
    ParkedDeparture,
    Presence,
    Push,
    PushKind,
    PushMessage,
    RoomRepository,
    VisitLog,
)
from services.room.domain.viewers import (
    JoinRoom,
    LeaveReason,
    NotInRoomError,
    RoomNotLiveError,
    ViewerFiguresNow,
    ViewerJoined,
    ViewerLeft,
    validate_join,
)

log = get_logger(__name__)

EMPTY_BATCH = 1000
PARKED_BATCH = 5000
"""At most this many parked departures are retried per sweep."""


@dataclass(frozen=True)
class JoinResult:
    visit_id: str
    new_visit: bool


def _watched_seconds(departure: Departure) -> int:
    return max(0, int((departure.left_at - departure.joined_at).total_seconds()))


class Viewers:
    def __init__(
        self,
        rooms: RoomRepository,
        presence: Presence,
        visits: VisitLog,
        push: Push,
        *,
        clock: Clock,
        timeout: timedelta,
        max_batch: int = 512,
    ) -> None:
        self._rooms = rooms
        self._presence = presence
        self._visits = visits
        self._push = push
        self._clock = clock
        self._timeout = timeout
        self._decide: MicroBatcher[JoinAttempt, JoinDecision] = MicroBatcher(
            self._presence.join_many, max_batch=max_batch, name="room.join.decide"
        )

    async def join(self, command: JoinRoom) -> JoinResult:
        validate_join(command)
        attempt = JoinAttempt(
            merchant_id=command.merchant_id,
            room_id=command.room_id,
            viewer_id=command.viewer_id,
            visit_id=uuid4().hex,
            at=self._clock(),
        )
        decision = await self._decide.submit(attempt)
        if decision.outcome is JoinOutcome.NOT_LIVE:
            decision = await self._reopen_and_retry(attempt)
        if decision.outcome is JoinOutcome.PRESENT:
            return JoinResult(decision.visit_id, new_visit=False)
        event = ViewerJoined(
            room_id=command.room_id,
            viewer_id=command.viewer_id,
            visit_id=attempt.visit_id,
            channel=command.channel,
            share_code=command.share_code,
            entry=command.entry,
            device_id=command.device_id,
            joined_at=attempt.at,
        )
        try:
            await self._visits.joined(command.merchant_id, event)
        except BaseException:
            await self._presence.forget_joins([attempt])
            raise
        return JoinResult(attempt.visit_id, new_visit=True)

    async def _reopen_and_retry(self, attempt: JoinAttempt) -> JoinDecision:
        """Presence does not know the room as live: the store says whether it is (Redis
        lost it, or this is the first join after going live) or why not."""
        room = await self._rooms.load(attempt.merchant_id, attempt.room_id)
        if not room.is_live:
            raise RoomNotLiveError(f"room {attempt.room_id} is {room.state.value}, not live")
        await self._presence.open(attempt.merchant_id, attempt.room_id)
        decision = await self._decide.submit(attempt)
        if decision.outcome is JoinOutcome.NOT_LIVE:
            raise RoomNotLiveError(f"room {attempt.room_id} is not live")
        return decision

    async def heartbeat(self, merchant_id: str, room_id: str, viewer_id: str) -> None:
        if not await self._presence.heartbeat(merchant_id, room_id, viewer_id, self._clock()):
            raise NotInRoomError("you are not in this room (timed out?): join again")

    async def leave(self, merchant_id: str, room_id: str, viewer_id: str) -> int:
        """The visit's watched seconds (0 if the viewer was not in the room)."""
        departure = await self._presence.leave(merchant_id, room_id, viewer_id, self._clock())
        if departure is None:
            return 0
        await self._record_departures(merchant_id, room_id, [departure], LeaveReason.LEFT)
        return _watched_seconds(departure)

    async def figures(self, merchant_id: str, room_id: str) -> ViewerFiguresNow:
        return await self._presence.figures(merchant_id, room_id, self._since(), self._clock())

    async def present(self, merchant_id: str, room_id: str) -> list[str]:
        return await self._presence.present(merchant_id, room_id, self._since())

    def _since(self) -> datetime:
        return self._clock() - self._timeout

    async def empty(self, merchant_id: str, room_id: str) -> int:
        """Everyone leaves (the room ended); how many."""
        total = 0
        while departures := await self._presence.empty(
            merchant_id, room_id, self._clock(), EMPTY_BATCH
        ):
            await self._record_departures(merchant_id, room_id, departures, LeaveReason.ROOM_ENDED)
            total += len(departures)
        return total

    async def sweep(self) -> int:
        """Viewers not seen for the timeout leave; every live room hears its viewer count.
        Safe in any number of replicas: presence takes each viewer out once."""
        await self.record_parked()
        total = 0
        since = self._since()
        for merchant_id, room_id in await self._presence.live_rooms():
            while departures := await self._presence.expire(
                merchant_id, room_id, since, EMPTY_BATCH
            ):
                await self._record_departures(
                    merchant_id, room_id, departures, LeaveReason.TIMED_OUT
                )
                total += len(departures)
            figures = await self._presence.figures(merchant_id, room_id, since, self._clock())
            await self._push.publish(
                merchant_id,
                [
                    PushMessage(
                        PushKind.VIEWERS,
                        room_id,
                        self._clock(),
                        {"concurrent": figures.concurrent, "peak": figures.peak},
                    )
                ],
            )
        return total

    async def _record_departures(
        self,
        merchant_id: str,
        room_id: str,
        departures: Sequence[Departure],
        reason: LeaveReason,
    ) -> None:
        """Concurrent appends, so the group commit writes them in one transaction."""
        events = [
            ViewerLeft(
                room_id=room_id,
                viewer_id=d.viewer_id,
                visit_id=d.visit_id,
                watched_seconds=_watched_seconds(d),
                left_at=d.left_at,
                reason=reason,
            )
            for d in departures
        ]
        results = await asyncio.gather(
            *(self._visits.left(merchant_id, e) for e in events), return_exceptions=True
        )
        # A ConcurrencyError is a visit that already has its ViewerLeft (a retry of a write
        # that had gone through) or never had its ViewerJoined: nothing is left to record.
        failed = [
            (departure, result)
            for departure, result in zip(departures, results, strict=True)
            if isinstance(result, BaseException) and not isinstance(result, ConcurrencyError)
        ]
        if not failed:
            return
        log.warning(
            "viewer departures not recorded; parked for the sweeper",
            room_id=room_id,
            count=len(failed),
            exc_info=failed[0][1],
        )
        await self._presence.park_departures(
            [ParkedDeparture(merchant_id, room_id, reason, d) for d, _ in failed]
        )

    async def record_parked(self) -> int:
        """Record the departures parked when their ViewerLeft could not be written; those
        that fail again are parked again (for the next sweep). How many were taken."""
        parked = await self._presence.take_parked(PARKED_BATCH)
        rooms: dict[tuple[str, str, LeaveReason], list[Departure]] = {}
        for item in parked:
            rooms.setdefault((item.merchant_id, item.room_id, item.reason), []).append(
                item.departure
            )
        for (merchant_id, room_id, reason), departures in rooms.items():
            await self._record_departures(merchant_id, room_id, departures, reason)
        return len(parked)
