"""Redis Lua scripts a service keeps in its package and calls by SHA.

Scripts are read from ``<package>/lua/<name>.lua`` and registered once; calls go by
EVALSHA, and when Redis answers NOSCRIPT (a restart, a failover, SCRIPT FLUSH) the script
is loaded and the calls that missed are sent again. :func:`evalsha_many` sends many calls in
one pipeline (one round trip for a burst). A Redis outage is the caller's retryable
:class:`UnavailableError` (:func:`unavailable_on_redis_errors`), never an unexplained 500.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from services.kit.errors import UnavailableError
from services.kit.redis import pipelined

P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on_redis_errors(
    what: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Turn Redis being down, timing out or out of connections into UnavailableError
    ("<what> is unavailable")."""

    def decorate(
        method: Callable[P, Coroutine[Any, Any, R]],
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except RedisError as error:
                raise UnavailableError(f"{what} is unavailable: {error}") from error

        return guarded

    return decorate


def register_scripts(redis: Redis, package: str, names: Iterable[str]) -> dict[str, AsyncScript]:
    """The scripts ``<package>/lua/<name>.lua``, registered (nothing is sent to Redis yet)."""
    folder = resources.files(package).joinpath("lua")
    return {
        name: redis.register_script(folder.joinpath(f"{name}.lua").read_text()) for name in names
    }


async def evalsha_many(
    redis: Redis, script: AsyncScript, numkeys: int, calls: Sequence[Sequence[Any]]
) -> list[Any]:
    """Run ``script`` once per call (keys then arguments) in one pipeline; the replies in
    order. (Not redis-py's Script objects: in a pipeline they cost a SCRIPT EXISTS round
    trip per batch.) A reply that is an error is raised."""
    replies: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for _ in range(2):
        answers = await _send(redis, script.sha, numkeys, [calls[i] for i in pending])
        missing = []
        for index, answer in zip(pending, answers, strict=True):
            if isinstance(answer, NoScriptError):
                missing.append(index)
            elif isinstance(answer, Exception):
                raise answer
            else:
                replies[index] = answer
        if not missing:
            return replies
        await redis.script_load(script.script)
        pending = missing
    raise UnavailableError("Redis keeps forgetting a script")


async def _send(redis: Redis, sha: str, numkeys: int, calls: Sequence[Sequence[Any]]) -> list[Any]:
    """One round trip: the replies, an error reply as its exception. A lone call goes
    without a pipeline (setting one up costs more than the call)."""
    if len(calls) == 1:
        try:
            return [await redis.evalsha(sha, numkeys, *calls[0])]
        except ResponseError as error:
            return [error]
    return await pipelined(redis, [("EVALSHA", sha, numkeys, *call) for call in calls])
