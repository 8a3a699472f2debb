"""A replay guard for signed webhooks: each notification id counts once.

A signature and a timestamp window prove a notification is the provider's and recent; they
do not stop a captured copy being sent again inside the window. :class:`NonceStore` records
each verified id in Redis (``SET NX`` with a time-to-live longer than the window, so an id
is remembered for as long as a copy of it could still pass the timestamp check).

The id is claimed before the notification is applied and given back if applying fails, so
the provider's retry of a failed delivery is applied, while a copy that arrives while the
first is being applied, or after it succeeded, is a no-op.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from redis.asyncio import Redis

from services.kit.lua import unavailable_on_redis_errors


class NonceStore:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    def _key(self, nonce: str) -> str:
        return f"nonce:{self._namespace}:{nonce}"

    @unavailable_on_redis_errors("the replay guard")
    async def claim(self, nonce: str, remember_for: timedelta) -> bool:
        """True the first time ``nonce`` is claimed within ``remember_for``."""
        seconds = max(1, int(remember_for.total_seconds()))
        return bool(await self._redis.set(self._key(nonce), "1", nx=True, ex=seconds))

    @unavailable_on_redis_errors("the replay guard")
    async def release(self, nonce: str) -> None:
        await self._redis.delete(self._key(nonce))

    @asynccontextmanager
    async def first_time(self, nonce: str, remember_for: timedelta) -> AsyncIterator[bool]:
        """``async with store.first_time(id, window) as first:`` apply only if ``first``;
        an error inside gives the id back so that a retry is applied."""
        first = await self.claim(nonce, remember_for)
        try:
            yield first
        except BaseException:
            if first:
                await self.release(nonce)
            raise
