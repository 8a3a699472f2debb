"""The kit's script calls against the real Redis: a script Redis forgot (a restart, a
failover, SCRIPT FLUSH) is loaded again and the call answered, whether it went alone or in
a pipeline with others."""

from __future__ import annotations

import time

import pytest
from redis.exceptions import ResponseError

from services.kit.lua import evalsha_many, register_scripts
from services.kit.redis import create_redis
from services.kit.testing import StackEndpoints, unique


@pytest.mark.parametrize("calls", [1, 3])
async def test_a_script_redis_forgot_is_loaded_again_and_every_call_answered(
    stack: StackEndpoints, calls: int
) -> None:
    redis = create_redis(stack.redis_url)
    script = register_scripts(redis, "services.kit", ["ratelimit"])["ratelimit"]
    keys = [unique("lua-test") for _ in range(calls)]
    try:
        await redis.script_flush()
        now_ms = int(time.time() * 1000)
        first = await evalsha_many(redis, script, 1, [(k, now_ms, 1, 60_000) for k in keys])
        again = await evalsha_many(redis, script, 1, [(k, now_ms, 1, 60_000) for k in keys])
        counted = [await redis.llen(k) for k in keys]
    finally:
        await redis.delete(*keys)
        await redis.aclose()

    assert first == [0] * calls  # accepted and counted
    assert all(0 < wait <= 60_000 for wait in again)  # the window of one is full
    assert counted == [1] * calls


async def test_an_error_reply_is_raised(stack: StackEndpoints) -> None:
    redis = create_redis(stack.redis_url)
    script = register_scripts(redis, "services.kit", ["ratelimit"])["ratelimit"]
    key = unique("lua-test")
    try:
        await redis.set(key, "not a list")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await evalsha_many(redis, script, 1, [(key, 0, 1, 1000)])
    finally:
        await redis.delete(key)
        await redis.aclose()
