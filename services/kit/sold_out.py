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


class SoldOutMemory:
    """What is remembered sold out, by key (e.g. merchant and sale), for ``ttl`` seconds."""

    def __init__(self, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._until: dict[tuple[str, ...], float] = {}

    def remember(self, *key: str) -> None:
        self._until[key] = self._clock() + self._ttl

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
