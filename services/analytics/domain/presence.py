"""Concurrency from joins and leaves.

Each join adds +1 at its second and each leave -1 at its second; the concurrency at t is the
sum of the deltas up to t. Because the deltas are summed per second, the result does not
depend on the order the visits' events were processed in (visits are on different
partitions), so the peak and its moment are the same live, after a restart and on replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.analytics.domain.counters import minute_of

Delta = tuple[datetime, int]


@dataclass(frozen=True)
class Peak:
    viewers: int
    at: datetime | None


@dataclass(frozen=True)
class MinuteViewers:
    minute: datetime
    peak: int
    at_end: int


def steps(deltas: Iterable[Delta]) -> list[tuple[datetime, int]]:
    """The concurrency after each second that changed it, in time order. A leave whose
    join is not known (it predates the stream) never takes the count below zero."""
    level = 0
    out: list[tuple[datetime, int]] = []
    for at, delta in sorted(deltas):
        level = max(0, level + delta)
        out.append((at, level))
    return out


def current(deltas: Iterable[Delta]) -> int:
    levels = steps(deltas)
    return levels[-1][1] if levels else 0


def peak(deltas: Iterable[Delta]) -> Peak:
    """The highest concurrency and the first moment it was reached."""
    best = Peak(0, None)
    for at, level in steps(deltas):
        if level > best.viewers:
            best = Peak(level, at)
    return best


def per_minute(deltas: Iterable[Delta], start: datetime, end: datetime) -> list[MinuteViewers]:
    """For each minute from ``start``'s to ``end``'s: the highest concurrency in it and the
    concurrency at its end (carried forward through minutes without a join or leave)."""
    levels = steps(deltas)
    minute, last = minute_of(start), minute_of(end)
    out: list[MinuteViewers] = []
    level, i = 0, 0
    while i < len(levels) and levels[i][0] < minute:
        level = levels[i][1]
        i += 1
    while minute <= last:
        following = minute + timedelta(minutes=1)
        high = level
        while i < len(levels) and levels[i][0] < following:
            level = levels[i][1]
            high = max(high, level)
            i += 1
        out.append(MinuteViewers(minute, high, level))
        minute = following
    return out


def viewer_seconds(deltas: Sequence[Delta], start: datetime, end: datetime) -> int:
    """The integral of concurrency over [start, end): the seconds watched in that window."""
    total = 0.0
    level, moment = 0, start
    for at, after in steps(deltas):
        if at >= end:
            break
        if at > start:
            total += level * (at - moment).total_seconds()
            moment = at
        level = after
    if end > moment:
        total += level * (end - moment).total_seconds()
    return round(total)
