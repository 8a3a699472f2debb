"""Per-process memory that something is sold out, so that the answer costs no round trip.

A flash sale's spike is mostly buyers who arrive after the last unit went: each of them should
hear "sold out" at once, without the work (Redis, the database, other services) that found it
out the first time. The memory is only ever a shortcut to a refusal, never to a sale: it is
forgotten after ``ttl`` seconds at most (and at once by :meth:`SoldOutMemory.forget`, when the
owner of the stock announces units back), so a unit that comes back is offered again at most
``ttl`` later, and nothing can be oversold through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PRUNE_AT = 1_024
"""Entries past which remembering also drops the lapsed ones (a long-lived process sees
many sales sell out, and a key nobody asks about again would otherwise stay for good)."""


class SoldOutMemory:
    """What is remembered sold out, by key (e.g. merchant and sale), for ``ttl`` seconds."""

    def __init__(self, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._until: dict[tuple[str, ...], float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def remember(self, *key: str) -> None:
        now = self._clock()
        if len(self._until) >= PRUNE_AT:
            self._until = {k: until for k, until in self._until.items() if until > now}
        self._until[key] = now + self._ttl

    def forget(self, *key: str) -> None:
        self._until.pop(key, None)

    def knows(self, *key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        return True
