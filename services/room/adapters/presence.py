"""Presence in Redis: who is in a live room, and the room's viewer figures.

Keys are ``<namespace>:{<merchant>:<room>}:<part>``: those of one room share the hash tag
(one cluster slot), so each
script sees them together: ``live`` (joins accepted), ``seen`` (sorted set viewer -> last
seen ms: concurrent viewers are one ZCOUNT), ``visits`` (hash viewer -> open visit and its
start), ``uv`` (HyperLogLog: unique viewers in 12 KB whatever the crowd), ``peak`` (set in
the join script, so it is exact under any storm), ``watch`` (watched ms of closed visits).
``<namespace>:live-rooms`` lists the open rooms for the sweeper;
``<namespace>:parked-departures`` (a list of JSON) holds departures whose ViewerLeft could
not be recorded yet, until the sweeper records them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from services.kit.lua import evalsha_many, register_scripts, unavailable_on_redis_errors
from services.room.application.ports import (
    Departure,
    JoinAttempt,
    JoinDecision,
    JoinOutcome,
    ParkedDeparture,
)
from services.room.domain.viewers import LeaveReason, ViewerFiguresNow

_SCRIPTS = ("join", "forget", "heartbeat", "depart")
_FOREVER_MS = 2**52


def room_key(namespace: str, merchant_id: str, room_id: str, part: str) -> str:
    return f"{namespace}:{{{merchant_id}:{room_id}}}:{part}"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _parked_json(parked: ParkedDeparture) -> str:
    d = parked.departure
    return json.dumps(
        [
            parked.merchant_id,
            parked.room_id,
            parked.reason.value,
            d.viewer_id,
            d.visit_id,
            _ms(d.joined_at),
            _ms(d.left_at),
        ]
    )


def _parked_of(text: str) -> ParkedDeparture:
    merchant_id, room_id, reason, viewer_id, visit_id, joined_ms, left_ms = json.loads(text)
    departure = Departure(viewer_id, visit_id, _at(joined_ms), _at(left_ms))
    return ParkedDeparture(merchant_id, room_id, LeaveReason(reason), departure)


class RedisPresence:
    def __init__(self, redis: Redis, *, namespace: str, retention: timedelta) -> None:
        self._redis = redis
        self._namespace = namespace
        self._live_rooms = f"{namespace}:live-rooms"
        self._parked = f"{namespace}:parked-departures"
        self._retention = retention
        self._scripts = register_scripts(redis, "services.room.adapters", _SCRIPTS)

    def _keys(self, merchant_id: str, room_id: str, *parts: str) -> list[str]:
        return [room_key(self._namespace, merchant_id, room_id, part) for part in parts]

    @unavailable_on_redis_errors("presence")
    async def join_many(self, attempts: Sequence[JoinAttempt]) -> list[JoinDecision]:
        calls = [
            [
                *self._keys(a.merchant_id, a.room_id, "live", "seen", "visits", "uv", "peak"),
                a.viewer_id,
                a.visit_id,
                _ms(a.at),
            ]
            for a in attempts
        ]
        replies = await evalsha_many(self._redis, self._scripts["join"], 5, calls)
        return [JoinDecision(JoinOutcome(outcome), visit) for outcome, visit in replies]

    @unavailable_on_redis_errors("presence")
    async def forget_joins(self, attempts: Sequence[JoinAttempt]) -> None:
        calls = [
            [*self._keys(a.merchant_id, a.room_id, "seen", "visits"), a.viewer_id, a.visit_id]
            for a in attempts
        ]
        await evalsha_many(self._redis, self._scripts["forget"], 2, calls)

    @unavailable_on_redis_errors("presence")
    async def heartbeat(self, merchant_id: str, room_id: str, viewer_id: str, at: datetime) -> bool:
        keys = self._keys(merchant_id, room_id, "seen", "visits")
        [seen] = await evalsha_many(
            self._redis, self._scripts["heartbeat"], 2, [[*keys, viewer_id, _ms(at)]]
        )
        return bool(seen)

    async def _depart(
        self, merchant_id: str, room_id: str, mode: str, target: str, limit: int, until: str
    ) -> list[Departure]:
        keys = self._keys(merchant_id, room_id, "seen", "visits", "watch")
        [flat] = await evalsha_many(
            self._redis, self._scripts["depart"], 3, [[*keys, mode, target, limit, until]]
        )
        return [
            Departure(flat[i], flat[i + 1], _at(flat[i + 2]), _at(flat[i + 3]))
            for i in range(0, len(flat), 4)
        ]

    @unavailable_on_redis_errors("presence")
    async def leave(
        self, merchant_id: str, room_id: str, viewer_id: str, at: datetime
    ) -> Departure | None:
        found = await self._depart(merchant_id, room_id, "one", viewer_id, 1, str(_ms(at)))
        return found[0] if found else None

    @unavailable_on_redis_errors("presence")
    async def expire(
        self, merchant_id: str, room_id: str, seen_before: datetime, limit: int
    ) -> list[Departure]:
        return await self._depart(
            merchant_id, room_id, "seen_before", str(_ms(seen_before)), limit, "last_seen"
        )

    @unavailable_on_redis_errors("presence")
    async def empty(
        self, merchant_id: str, room_id: str, at: datetime, limit: int
    ) -> list[Departure]:
        return await self._depart(
            merchant_id, room_id, "seen_before", str(_FOREVER_MS), limit, str(_ms(at))
        )

    @unavailable_on_redis_errors("presence")
    async def open(self, merchant_id: str, room_id: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(room_key(self._namespace, merchant_id, room_id, "live"), "1")
        for key in self._keys(merchant_id, room_id, "seen", "visits", "uv", "peak", "watch"):
            pipe.persist(key)
        pipe.sadd(self._live_rooms, f"{merchant_id}:{room_id}")
        await pipe.execute()

    @unavailable_on_redis_errors("presence")
    async def close(self, merchant_id: str, room_id: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(room_key(self._namespace, merchant_id, room_id, "live"))
        pipe.srem(self._live_rooms, f"{merchant_id}:{room_id}")
        for key in self._keys(merchant_id, room_id, "seen", "visits", "uv", "peak", "watch"):
            pipe.expire(key, self._retention)
        await pipe.execute()

    @unavailable_on_redis_errors("presence")
    async def park_departures(self, parked: Sequence[ParkedDeparture]) -> None:
        if parked:
            await self._redis.rpush(self._parked, *(_parked_json(p) for p in parked))

    @unavailable_on_redis_errors("presence")
    async def take_parked(self, limit: int) -> list[ParkedDeparture]:
        taken = await self._redis.lpop(self._parked, limit)
        return [_parked_of(str(item)) for item in taken or []]

    @unavailable_on_redis_errors("presence")
    async def live_rooms(self) -> list[tuple[str, str]]:
        members = await self._redis.smembers(self._live_rooms)
        rooms = []
        for member in sorted(str(m) for m in members):
            merchant_id, _, room_id = member.partition(":")
            rooms.append((merchant_id, room_id))
        return rooms

    @unavailable_on_redis_errors("presence")
    async def figures(
        self, merchant_id: str, room_id: str, since: datetime, now: datetime
    ) -> ViewerFiguresNow:
        seen, visits, uv, peak, watch = self._keys(
            merchant_id, room_id, "seen", "visits", "uv", "peak", "watch"
        )
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcount(seen, _ms(since), "+inf")
        pipe.pfcount(uv)
        pipe.get(peak)
        pipe.get(watch)
        pipe.hvals(visits)
        concurrent, unique, peak_value, watched_ms, open_visits = await pipe.execute()
        now_ms = _ms(now)
        ongoing = sum(max(0, now_ms - int(v.partition("|")[2])) for v in open_visits)
        return ViewerFiguresNow(
            concurrent=int(concurrent),
            unique=int(unique),
            peak=int(peak_value or 0),
            watched_seconds=(int(watched_ms or 0) + ongoing) // 1000,
        )

    @unavailable_on_redis_errors("presence")
    async def present(self, merchant_id: str, room_id: str, since: datetime) -> list[str]:
        [seen] = self._keys(merchant_id, room_id, "seen")
        viewers = await self._redis.zrangebyscore(seen, _ms(since), "+inf")
        return [str(v) for v in viewers]
