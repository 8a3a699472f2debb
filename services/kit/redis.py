"""Redis clients for the services: asyncio, string replies, hiredis parsing and packing,
pipelines read under one deadline, and :func:`pipelined` for the hot paths' batches."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

SOCKET_TIMEOUT_SECONDS = 5.0
"""How long a command's reply may take (redis-py's own default, stated here)."""

_ONE_DEADLINE: ContextVar[bool] = ContextVar("redis_pipeline_under_one_deadline", default=False)


def _packed(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol, packed by hiredis."""
    if isinstance(args[0], str) and " " in args[0]:  # "CONFIG GET": one word a part
        args = (*args[0].split(), *args[1:])
    try:
        return hiredis.pack_command(args)  # type: ignore[no-any-return]
    except TypeError:  # hiredis takes bytes, str and numbers, not their views
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
    try:
        return hiredis.pack_command(args)  # type: ignore[no-any-return]
    except TypeError as error:
        raise DataError(str(error)) from error


@asynccontextmanager
async def _one_deadline(pool: ConnectionPool) -> AsyncIterator[None]:
    """The pool's socket timeout for a whole round trip of many replies (both kinds of
    pipeline here); past it, a Redis TimeoutError, as a single command's late reply is."""
    seconds = pool.connection_kwargs.get("socket_timeout")
    seconds = SOCKET_TIMEOUT_SECONDS if seconds is None else seconds
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise RedisTimeoutError(f"Redis did not answer a pipeline within {seconds} s") from error


class HiredisPackingConnection(Connection):
    """redis-py's asyncio connection packs every command in Python (a quarter of the reserve
    path's CPU in a profile); its synchronous connection packs with hiredis in C when hiredis
    is installed. This does the same here: the bytes on the wire are the same.

    It also reads the replies of a :class:`KitRedis` pipeline without a deadline of their
    own: the pipeline's single deadline bounds them all."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [_packed(args)]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(_packed(tuple(command)) for command in commands)]

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - redis-py's signature, overridden
        **options: Any,
    ) -> Any:
        if timeout is None and _ONE_DEADLINE.get():
            timeout = math.inf  # redis-py's "no deadline of its own for this read"
        return await super().read_response(disable_decoding, timeout, **options)


class _OneDeadlinePipeline(Pipeline):
    """A pipeline whose replies are read under one deadline for the whole round trip
    instead of one per reply. redis-py arms and disarms an event-loop timer around every
    reply it reads, even when the reply is already in the buffer: ~4 µs of CPU per command,
    40 % of what a pipelined EVALSHA costs the client (measured, docs/benchmarks.md). A
    reply that does not come within the socket timeout is a Redis TimeoutError, as for a
    single command, and the connection is dropped (redis-py closes a connection whose read
    was interrupted)."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        token = _ONE_DEADLINE.set(True)
        try:
            async with _one_deadline(self.connection_pool):
                replies: list[Any] = await super().execute(raise_on_error)
                return replies
        finally:
            _ONE_DEADLINE.reset(token)


class KitRedis(Redis):
    """redis-py's client whose pipelines are read under one deadline."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _OneDeadlinePipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


async def pipelined(redis: Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send ``commands`` in one write and read their replies in order (a pipeline
    without MULTI); an error reply is its exception, in its place.

    What the hot paths' batches use instead of ``redis.pipeline()``: redis-py's pipeline
    queues each command with its options, looks up a reply callback for each and times
    the whole for its observability hooks, 9-11 µs of client CPU per EVALSHA against 5
    µs here (measured, docs/benchmarks.md, session 12). The rest is as redis-py's: a
    connection from the pool with its health check, the client's retry policy when the
    connection is lost (dropped between tries; the hot paths' scripts are idempotent on
    their ids) and one deadline for the round trip, past which the connection is dropped
    and the error is a Redis ``TimeoutError``. Replies are not passed through redis-py's
    reply callbacks: a script's reply comes back as Redis sent it."""
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        async with _one_deadline(pool):
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: _round_trip(conn, commands), lambda _: conn.disconnect()
            )
            return replies
    finally:
        await pool.release(conn)


async def _round_trip(conn: AbstractConnection, commands: Sequence[Sequence[Any]]) -> list[Any]:
    await conn.send_packed_command(conn.pack_commands(commands))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await conn.read_response(timeout=math.inf))  # the caller's deadline
        except ResponseError as error:
            replies.append(error)
    return replies


def create_redis(
    url: str,
    *,
    max_connections: int = 64,
    wait_seconds: float = 5.0,
    socket_timeout: float = SOCKET_TIMEOUT_SECONDS,
) -> Redis:
    """A client with its own pool. Nothing connects until the first command; a reply (a
    pipeline's replies together) may take ``socket_timeout`` seconds.

    The pool blocks (up to ``wait_seconds``) for a free connection instead of failing at once:
    a burst of more concurrent commands than connections queues, it does not error."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        socket_timeout=socket_timeout,
        connection_class=HiredisPackingConnection,
    )
    return KitRedis(connection_pool=pool)
