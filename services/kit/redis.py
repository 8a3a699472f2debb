"""Redis clients for the services: asyncio, string replies, hiredis parsing and packing."""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.exceptions import DataError


class HiredisPackingConnection(Connection):
    """redis-py's asyncio connection packs every command in Python (a quarter of the reserve
    path's CPU in a profile); its synchronous connection packs with hiredis in C when hiredis
    is installed. This does the same here: the bytes on the wire are the same."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "CONFIG GET": one word a part
            args = (*args[0].split(), *args[1:])
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as error:
            raise DataError(str(error)) from error


def create_redis(url: str, *, max_connections: int = 64, wait_seconds: float = 5.0) -> Redis:
    """A client with its own pool. Nothing connects until the first command.

    The pool blocks (up to ``wait_seconds``) for a free connection instead of failing at once:
    a burst of more concurrent commands than connections queues, it does not error."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        connection_class=HiredisPackingConnection,
    )
    return Redis(connection_pool=pool)
