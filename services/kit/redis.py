"""Redis clients for the services: asyncio, string replies, hiredis parsing when present."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


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
    )
    return Redis(connection_pool=pool)
