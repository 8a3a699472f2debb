"""The benchmarks' load drivers (bench.load): what an open loop starts when, and what it
counts as a call's latency. Pure logic against a call that does nothing."""

from __future__ import annotations

import time
from itertools import pairwise

from bench.load import open_loop


async def test_an_open_loop_starts_what_fell_due_each_tick_together_and_counts_the_wait() -> None:
    started: list[float] = []

    async def call(worker: int, seq: int) -> str:
        started.append(time.perf_counter())
        return "ok"

    sample = await open_loop(call, rate=200, duration=0.3, warmup=0.0, tick=0.05)

    assert sample.ops == 60
    assert sample.outcomes == {"ok": 60}
    wake_ups = 1 + sum(1 for a, b in pairwise(started) if b - a > 0.02)
    assert wake_ups <= 7  # one per tick of 50 ms, not one per call (60)
    # a call due early in a tick starts at its end: the wait is part of its latency
    assert sum(sample.latencies_ms) / sample.ops > 5


async def test_an_open_loop_counts_only_the_calls_due_after_its_warm_up() -> None:
    async def call(worker: int, seq: int) -> str:
        return "ok"

    sample = await open_loop(call, rate=100, duration=0.2, warmup=0.1, tick=0.01)

    assert sample.ops == 20
    assert len(sample.latencies_ms) == 20  # the 10 calls due in the warm-up are not counted
