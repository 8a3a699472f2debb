"""Per-process memory that something is sold out, so that the answer costs no round trip.

A flash sale's spike is mostly buyers who arrive after the last unit went: each of them should
hear "sold out" at once, without the work (Redis, the database, other services) that found it
out the first time. The memory is only ever a shortcut to a refusal, never to a sale.

An answer is remembered for ``ttl`` seconds. When that lapses, the next caller is told "not
known" and asks the owner of the stock again (the probe), while every other caller keeps
hearing "sold out" until the probe's answer comes: :meth:`SoldOutMemory.remember` when it is
sold out still, :meth:`SoldOutMemory.forget` when units came back (the caller forgets on any
answer that is not "sold out"; the stock's owner may also announce a restock at once). A
probe that never answers (its request failed or was cancelled) stops counting after
``probe_seconds``, and the next caller probes. So a unit that comes back is offered again
within ``ttl`` plus one probe at worst, a busy process sends one request per lapse instead
of one per caller in flight, and nothing can be oversold through the memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PRUNE_AT = 1_024
"""Entries past which remembering also drops the lapsed ones (a long-lived process sees
many sales sell out, and a key nobody asks about again would otherwise stay for good)."""


class SoldOutMemory:
    """What is remembered sold out, by key (e.g. merchant and sale), for ``ttl`` seconds;
    then one caller probes (see the module) for at most ``probe_seconds`` (default ``ttl``)."""

    def __init__(
        self,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        probe_seconds: float | None = None,
    ) -> None:
        self._ttl = ttl
        self._probe = ttl if probe_seconds is None else probe_seconds
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
        """True: answer "sold out". False: ask the stock's owner (and remember or forget
        what it says); after a lapse, only the first caller is told False."""
        until = self._until.get(key)
        if until is None:
            return False
        now = self._clock()
        if now < until:
            return True
        self._until[key] = now + self._probe  # this caller probes; the others wait on it
        return False
