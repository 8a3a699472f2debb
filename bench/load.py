"""Load drivers: a closed loop (N callers, each calling again as soon as its call returns)
and an open loop (calls started on a fixed schedule, whatever the answers do), and the
figures both report.

A call returns a short outcome label ("reserved", "sold_out", "ok" ...); an exception is
counted under its type name and is not a completed operation. Latency is measured per call
with ``perf_counter``; in the open loop it is measured from the moment the call was due, so
a driver or server that falls behind shows it in the latency (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Call = Callable[[int, int], Awaitable[str]]
"""``call(worker, seq)``: one operation; ``(worker, seq)`` is unique within a run."""


@dataclass
class Sample:
    """What one driver saw in its measured window."""

    ops: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    """CPU time this process spent in the measured window (user + system)."""

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "seconds": self.seconds,
            "latencies_ms": [round(v, 4) for v in self.latencies_ms],
            "outcomes": dict(self.outcomes),
            "errors": dict(self.errors),
            "cpu_seconds": self.cpu_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        return cls(
            ops=int(data["ops"]),
            seconds=float(data["seconds"]),
            latencies_ms=[float(v) for v in data["latencies_ms"]],
            outcomes=Counter({str(k): int(v) for k, v in data["outcomes"].items()}),
            errors=Counter({str(k): int(v) for k, v in data["errors"].items()}),
            cpu_seconds=float(data.get("cpu_seconds", 0.0)),
        )


def merge(samples: Sequence[Sample]) -> Sample:
    """Several drivers run side by side: rates add up, latencies pool together."""
    merged = Sample()
    for sample in samples:
        merged.latencies_ms += sample.latencies_ms
        merged.outcomes += sample.outcomes
        merged.errors += sample.errors
        merged.cpu_seconds += sample.cpu_seconds
    total_rate = sum(s.throughput for s in samples)
    merged.seconds = max((s.seconds for s in samples), default=0.0)
    merged.ops = round(total_rate * merged.seconds)
    return merged


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def error_label(error: BaseException) -> str:
    """The exception's type, with the gRPC status code when it has one."""
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return f"{type(error).__name__}:{getattr(code(), 'name', code())}"
        except Exception:  # noqa: S110 - a label is best effort
            pass
    return type(error).__name__


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def closed_loop(call: Call, *, concurrency: int, duration: float, warmup: float) -> Sample:
    """``concurrency`` callers call back to back for ``warmup + duration`` seconds; the
    calls that complete in the last ``duration`` seconds are counted."""
    sample = Sample()
    start = time.perf_counter()
    measure_from = start + warmup
    measure_until = measure_from + duration
    cpu_at: list[float] = []

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_at.append(_cpu())
        await asyncio.sleep(max(0.0, measure_until - time.perf_counter()))
        cpu_at.append(_cpu())

    async def worker(index: int) -> None:
        seq = 0
        while True:
            began = time.perf_counter()
            if began >= measure_until:
                return
            try:
                outcome = await call(index, seq)
            except Exception as error:
                ended = time.perf_counter()
                if measure_from <= ended < measure_until:
                    sample.errors[error_label(error)] += 1
            else:
                ended = time.perf_counter()
                if measure_from <= ended < measure_until:
                    sample.ops += 1
                    sample.latencies_ms.append((ended - began) * 1000)
                    sample.outcomes[outcome] += 1
            seq += 1

    await asyncio.gather(mark_cpu(), *(worker(i) for i in range(concurrency)))
    sample.seconds = duration
    sample.cpu_seconds = cpu_at[1] - cpu_at[0]
    return sample


async def open_loop(
    call: Call,
    *,
    rate: float,
    duration: float,
    warmup: float,
    max_in_flight: int = 20_000,
    tick: float = 0.002,
) -> Sample:
    """Start calls at ``rate`` per second for ``warmup + duration`` seconds, however long
    they take; the calls due in the last ``duration`` seconds are counted, their latency
    taken from when they were due. A call that cannot start because ``max_in_flight`` calls
    are outstanding counts as the error ``Overloaded``.

    The driver wakes every ``tick`` seconds and starts every call that fell due meanwhile,
    together. Waking for each call (every 0.4 ms at 2,400/s) cost the gRPC driver ~380 µs
    of CPU per call against ~150 µs this way: on a two-core machine the load generator
    then took most of a core from the server it measured. A call started up to ``tick``
    after it was due carries that delay in its latency."""
    sample = Sample()
    start = time.perf_counter()
    measure_from = start + warmup
    total = int((warmup + duration) * rate)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(seq: int, due: float) -> None:
        counted = due >= measure_from
        try:
            outcome = await call(0, seq)
        except Exception as error:
            if counted:
                sample.errors[error_label(error)] += 1
            return
        if counted:
            sample.ops += 1
            sample.latencies_ms.append((time.perf_counter() - due) * 1000)
            sample.outcomes[outcome] += 1

    cpu_from: float | None = None
    seq = 0
    while seq < total:
        now = time.perf_counter()
        if cpu_from is None and now >= measure_from:
            cpu_from = _cpu()
        due_now = min(total, int((now - start) * rate) + 1)
        while seq < due_now:
            due = start + seq / rate
            if len(in_flight) >= max_in_flight:
                if due >= measure_from:
                    sample.errors["Overloaded"] += 1
            else:
                task = asyncio.create_task(one(seq, due))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            seq += 1
        await asyncio.sleep(tick)
    if in_flight:
        await asyncio.gather(*in_flight)
    sample.cpu_seconds = _cpu() - (cpu_from if cpu_from is not None else _cpu())
    sample.seconds = duration
    return sample
