"""``python -m bench.rate_limits``: what a rate-limit check costs the route that makes it.

The kit's :class:`~services.kit.ratelimit.RateLimiter` (one moving-window script per key,
the user's and the address's in one pipeline) against the ``limits`` library's own Redis
moving window (one script call per key, one after the other), alternated in one run on the
same Redis: checks per second, and the CPU of this process and of Redis per check. Each
check is a new user from one of 250 addresses, under limits no check reaches (both keys are
counted every time, as for a buyer within the limits). ``--exempt`` puts the addresses in an
exempt network (only the user's key is counted). Needs the local stack's Redis (``make up``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import uvloop
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.procs import CpuWindow, process_cpu
from devstack.config import StackConfig
from services.kit.ratelimit import RateLimit, RateLimiter
from services.kit.testing import unique

PER_USER = "1000/10 seconds"
PER_ADDRESS = "1000000/10 seconds"
EXEMPT = "10.0.0.0/8"

Check = Callable[[str, str], Awaitable[None]]


def kit_check(redis: Redis, exempt: bool) -> Check:
    limiter = RateLimiter(
        redis,
        unique("bench-rl"),
        {"buy": RateLimit(PER_USER, PER_ADDRESS)},
        [EXEMPT] if exempt else [],
    )

    async def check(user: str, address: str) -> None:
        await limiter.check("buy", user=user, address=address)

    return check


def library_check(redis: Redis, exempt: bool) -> Check:
    """What the kit's limiter did before: ``limits``' strategy, the user's key, then the
    address's (unless exempt)."""
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=unique("bench-rl"),
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed too narrowly
    )
    limiter = MovingWindowRateLimiter(storage)
    per_user, per_address = parse(PER_USER), parse(PER_ADDRESS)

    async def check(user: str, address: str) -> None:
        if await limiter.hit(per_user, "buy", "user", user) and not exempt:
            await limiter.hit(per_address, "buy", "address", address)

    return check


async def _measure(
    redis: Redis, check: Check, checks: int, concurrency: int
) -> tuple[float, float, float]:
    """Checks per second, µs of this process's CPU and of Redis's per check."""
    tag = unique("u")

    async def worker(index: int, count: int) -> None:
        for seq in range(count):
            await check(f"{tag}-{index}-{seq}", f"10.0.0.{index % 250}")

    await asyncio.gather(*(worker(i, 20) for i in range(concurrency)))  # warm: connected
    window = CpuWindow({"client": lambda: process_cpu(os.getpid())}, redis=redis)
    await window.start()
    started = time.perf_counter()
    per_worker = checks // concurrency
    await asyncio.gather(*(worker(i, per_worker) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    percent = await window.stop()
    done = per_worker * concurrency

    def per_check(party: str) -> float:
        return percent.get(party, 0.0) / 100 * elapsed * 1e6 / done

    return done / elapsed, per_check("client"), per_check("redis")


async def run(redis_url: str, checks: int, concurrency: int, rounds: int, exempt: bool) -> None:
    redis = Redis.from_url(redis_url)
    keys = "the user's key" if exempt else "the user's and the address's keys"
    print(f"{checks:,} checks of {keys}, {concurrency} in flight, {rounds} rounds")
    try:
        for index in range(rounds):
            for name, make in (("limits, key by key", library_check), ("kit", kit_check)):
                rate, own, server = await _measure(redis, make(redis, exempt), checks, concurrency)
                print(
                    f"round {index + 1}  {name:18} {rate:9,.0f} checks/s"
                    f"  client {own:5.1f} µs/check  redis {server:5.1f} µs/check"
                )
    finally:
        async for key in redis.scan_iter(match="*bench-rl*"):
            await redis.delete(key)
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rate_limits", description=__doc__)
    parser.add_argument("--redis-url", default=StackConfig().redis_url)
    parser.add_argument("--checks", type=int, default=12_800)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exempt", action="store_true", help="addresses in an exempt network")
    args = parser.parse_args(argv)
    try:
        uvloop.run(run(args.redis_url, args.checks, args.concurrency, args.rounds, args.exempt))
    except (OSError, RedisError) as error:
        print(f"rate_limits: cannot reach Redis ({error}); start it with make up", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
