"""``python -m bench.pool_reset``: what asyncpg's reset on release costs a pooled query.

The kit's pools give connections back without asyncpg's reset round trip
(:func:`services.kit.db.create_pool`); this measures one trivial pooled query both ways,
alternated, in one run: queries per second, the CPU of this process and of the Postgres
cluster per query. Needs the local stack's Postgres (``make up``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence

import asyncpg
import uvloop

from bench.procs import CpuWindow, postmaster_of, process_cpu, tree_cpu
from devstack.config import StackConfig
from services.kit.db import create_pool


async def _measure(
    pool: asyncpg.Pool, queries: int, concurrency: int
) -> tuple[float, float, float]:
    """Queries per second, µs of this process's CPU and of Postgres's per query."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await pool.fetchval("SELECT $1::int", 1)

    await asyncio.gather(*(worker(100) for _ in range(concurrency)))  # warm: all connected
    postmaster = postmaster_of(await pool.fetchval("SELECT pg_backend_pid()"))
    window = CpuWindow({"client": lambda: process_cpu(os.getpid())})
    if postmaster is not None:
        window.add("postgres", lambda: tree_cpu(postmaster))
    await window.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker(queries // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    percent = await window.stop()
    done = queries // concurrency * concurrency

    def per_query(party: str) -> float:
        return percent.get(party, 0.0) / 100 * elapsed * 1e6 / done

    return done / elapsed, per_query("client"), per_query("postgres")


async def run(dsn: str, queries: int, concurrency: int, rounds: int) -> None:
    print(f"pooled 'SELECT $1' x {queries:,}, {concurrency} in flight, {rounds} rounds")
    for index in range(rounds):
        for name in ("asyncpg default reset", "kit pool (no reset)"):
            if name.startswith("kit"):
                pool = await create_pool(dsn, min_size=concurrency, max_size=concurrency)
            else:
                pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
            try:
                rate, own, postgres = await _measure(pool, queries, concurrency)
            finally:
                await pool.close()
            print(
                f"round {index + 1}  {name:22} {rate:9,.0f} queries/s"
                f"  client {own:5.1f} µs/query  postgres {postgres:5.1f} µs/query"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pool_reset", description=__doc__)
    parser.add_argument("--postgres-dsn", default=StackConfig().postgres_dsn("postgres"))
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        uvloop.run(run(args.postgres_dsn, args.queries, args.concurrency, args.rounds))
    except OSError as error:
        print(
            f"pool_reset: cannot reach Postgres ({error}); start it with make up", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
