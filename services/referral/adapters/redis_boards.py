"""Leaderboards (top sharers by referred GMV) in Redis sorted sets, and the per-minute
minting limit. Keys of one merchant share the hash tag ``{lb:<merchant>}`` so that the
bump script's keys live on one Redis Cluster slot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from services.kit.lua import evalsha_many, register_scripts, unavailable_on_redis_errors

CHANGE_MEMORY_SECONDS = 60 * 24 * 3600
"""How long a change id is remembered: far longer than any redelivery of its event."""


def _tag(merchant_id: str) -> str:
    return f"{{lb:{merchant_id}}}"


def board_key(merchant_id: str, board: str) -> str:
    return f"{_tag(merchant_id)}:board:{board}"


class RedisLeaderboards:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._bump = register_scripts(redis, "services.referral.adapters", ["bump"])["bump"]

    @unavailable_on_redis_errors("the leaderboard")
    async def add(
        self,
        merchant_id: str,
        change_id: str,
        boards: Sequence[str],
        sharer_id: str,
        gmv_minor: int,
    ) -> None:
        if not boards or not gmv_minor:
            return
        keys = [f"{_tag(merchant_id)}:seen:{change_id}"]
        keys += [board_key(merchant_id, b) for b in boards]
        await evalsha_many(
            self._redis,
            self._bump,
            len(keys),
            [[*keys, sharer_id, gmv_minor, CHANGE_MEMORY_SECONDS]],
        )

    @unavailable_on_redis_errors("the leaderboard")
    async def top(self, merchant_id: str, board: str, limit: int) -> list[tuple[str, int]]:
        found = await self._redis.zrevrange(
            board_key(merchant_id, board), 0, limit - 1, withscores=True
        )
        pairs = cast("list[tuple[str, float]]", found)  # withscores: (member, score) pairs
        return [(member, int(score)) for member, score in pairs]


class RedisMintLimiter:
    """A fixed one-minute window per user: INCR, and the key expires after the window."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @unavailable_on_redis_errors("the share-code rate limit")
    async def allow(self, merchant_id: str, user_id: str, limit_per_minute: int) -> bool:
        key = f"{{rl:{merchant_id}}}:mint:{user_id}:{int(time.time()) // 60}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return int(count) <= limit_per_minute
