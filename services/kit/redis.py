"""Redis clients for the services: asyncio, string replies, hiredis parsing when present."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str, *, max_connections: int = 64) -> Redis:
    """A client with its own pool. Nothing connects until the first command."""
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        health_check_interval=30,
        socket_keepalive=True,
    )
