"""Group concurrent requests into one call: one Redis pipeline for many reservations, one
transaction for many holds (group commit).

Batches form by themselves: a flusher drains whatever has queued up while the previous
batch was in flight (and, before its first batch, whatever became runnable in the same turn
of the event loop), so at low load a request goes alone at once (no timer, no added delay)
and under load batches grow with the load.

That is enough when requests arrive together (HTTP requests parsed in one turn of the loop
reach the batcher together). When they arrive one by one faster than a flush is paid for
(gRPC delivers each call on its own, and each Redis pipeline costs ~100 µs of Python
whatever it carries), ``min_interval`` spaces the flushes of a busy batcher: a flush starts
no sooner than ``min_interval`` after the previous one started, and carries everything that
arrived meanwhile. An idle batcher (its last flush longer ago than that) still flushes at
once, so only a loaded batcher waits, and never longer than ``min_interval``.

Written here because the product's hot path depends on exactly this behaviour (no wait when
idle, bounded in-flight flushes, per-item results), and the batching helpers on PyPI add a
fixed wait or lose per-item errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from services.kit import metrics
from services.kit.errors import OutcomeUnknownError
from services.kit.logging import get_logger

log = get_logger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

Flush = Callable[[Sequence[In]], Awaitable[Sequence[Out | BaseException]]]


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        flush: Flush[In, Out],
        *,
        max_batch: int = 256,
        max_in_flight: int = 1,
        name: str = "batch",
        min_interval: float = 0.0,
    ) -> None:
        """``flush`` gets a batch and returns one result or exception per item, in order;
        if it raises, every item of the batch gets that exception. ``name`` labels the
        batch-size histogram (``livecommerce_batch_size``); ``min_interval`` (seconds) is
        the least time between the starts of two flushes of a busy batcher (0: none)."""
        self._flush = flush
        self._sizes = metrics.BATCH_SIZE.labels(name)
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._flushers = 0
        self._min_interval = min_interval
        self._last_start = 0.0
        self.batches = 0
        self.items = 0

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flushers < self._max_in_flight:
            self._flushers += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            # Let the requests that are already runnable (a burst arriving together) reach
            # submit() before the first batch is cut: it costs no wait, only one turn of the
            # event loop, and turns a burst into one batch instead of one flush per request.
            await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            while self._queue:
                if self._min_interval and len(self._queue) < self._max_batch:
                    wait = self._last_start + self._min_interval - loop.time()
                    if wait > 0:  # busy: let more arrive (a full batch goes at once)
                        await asyncio.sleep(wait)
                self._last_start = loop.time()
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._run(batch)
        finally:
            self._flushers -= 1

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        self._sizes.observe(len(batch))
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush returned {len(results)} results for {len(batch)}")
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class ReplyPacer:
    """Lets the answers of a busy server leave together: :meth:`turn` returns at once when
    the last group left at least ``interval`` seconds ago, and otherwise waits for the next
    group, which leaves ``interval`` after the last one, all its waiters woken in one turn
    of the event loop.

    For answers that need no batch of their own ("sold out", known from memory): a server
    pays per turn of the loop that has answers to send (grpc.aio a wake-up between its
    poller thread and the loop and a write; uvicorn a write), so answers sent one turn each
    cost about a third more CPU over gRPC, and a fifth more over HTTP, than answers sent
    together (docs/benchmarks.md, session 14). An idle server answers at once; a busy one,
    at most ``interval`` later. Used by inventory's gRPC API and order's HTTP API."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -interval
        self._waiters: list[asyncio.Future[None]] = []

    async def turn(self) -> None:
        if self._interval <= 0:
            return
        loop = asyncio.get_running_loop()
        if not self._waiters:
            now = loop.time()
            if now - self._last >= self._interval:
                self._last = now
                return
            loop.call_at(self._last + self._interval, self._release)
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _release(self) -> None:
        self._last = asyncio.get_running_loop().time()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # a cancelled waiter is done already
                waiter.set_result(None)


T = TypeVar("T")

RECORDING_WAITS = (0.02, 0.05, 0.1, 0.2)
"""How long a repeat waits, in steps, for the first request's record (~0.4 s in all)."""


async def until_recorded(
    read: Callable[[], Awaitable[T | None]], waits: Sequence[float] = RECORDING_WAITS
) -> T | None:
    """A repeat of a request (same id) decided in the same batch as the first finds the first
    only once the first's group commit lands: read until ``read`` finds the record, waiting
    ``waits`` in between; None if it never appeared (the caller answers "retry")."""
    for wait in waits:
        found = await read()
        if found is not None:
            return found
        await asyncio.sleep(wait)
    return await read()


async def record_or_give_back(
    batch: Sequence[In],
    record: Callable[[Sequence[In]], Awaitable[Sequence[BaseException | None]]],
    give_back: Callable[[In], Awaitable[object]],
) -> list[BaseException | None]:
    """The group commit of decisions taken before it (a Redis script granted a hold or a
    claim): ``record`` the batch (one error or None per item), then ``give_back`` every item
    that could not be recorded, here, in the batch's flush, before its requests hear the
    error. Not in the requests: a request can be cancelled (its deadline passed, its caller
    left) while its item is recorded all the same, and a give-back then would free what the
    store holds (an oversell). Nothing is given back when ``record`` cannot tell whether the
    batch was recorded (:class:`OutcomeUnknownError`), for the same reason. What is not
    given back here (that, and a give-back that fails, which is logged) is left to the
    service's sweeper, which gives back only what the store does not hold."""
    not_recorded: Sequence[BaseException | None]
    try:
        not_recorded = await record(batch)
    except OutcomeUnknownError as unknown:
        log.warning("batch may be recorded; left to the sweeper", items=len(batch))
        return [unknown] * len(batch)
    except Exception as failure:
        not_recorded = [failure] * len(batch)
    refused = [item for item, error in zip(batch, not_recorded, strict=True) if error is not None]
    if refused:  # the usual batch records everything: no gather to set up
        for outcome in await asyncio.gather(*map(give_back, refused), return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("unrecorded item not given back yet", error=repr(outcome))
    return list(not_recorded)
