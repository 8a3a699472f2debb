"""The kernel's Redis client packs commands in C exactly as redis-py would in Python."""

from __future__ import annotations

from redis.asyncio import Connection

from services.kit.redis import HiredisPackingConnection


def test_hiredis_packing_puts_the_same_bytes_on_the_wire_as_redis_py() -> None:
    command = ("EVALSHA", "f00d", 5, "{fs:m:s:0}:meta", "hold-1", 1.5, b"raw", memoryview(b"mv"))
    assert b"".join(HiredisPackingConnection().pack_command(*command)) == b"".join(
        Connection().pack_command(*command)
    )
    assert b"".join(HiredisPackingConnection().pack_command("CONFIG GET", "maxmemory")) == (
        b"".join(Connection().pack_command("CONFIG GET", "maxmemory"))
    )
