"""Running a service process: signals, the event loop, and serving HTTP until stopped.

Every service's ``__main__`` names its roles (api, grpc, worker ...) and hands the chosen
one to :func:`run`; SIGTERM and SIGINT set the stop event and the role shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping

import uvicorn
import uvloop
from fastapi import FastAPI

from services.kit.logging import configure_logging, get_logger
from services.kit.settings import ServiceSettings

log = get_logger(__name__)

Role = Callable[[asyncio.Event], Awaitable[None]]


def tune_garbage_collector(settings: ServiceSettings) -> None:
    """Make the cyclic garbage collector cheap for a long-running server.

    Measured on the coupon-claim path (docs/benchmarks.md): with Python's defaults a claim
    cost ~580 µs of server CPU and ~420 µs with this, p99 130 ms against 43 ms. Two causes:
    every full collection walked the whole heap, most of it modules, classes and settings
    that live as long as the process; and the youngest generation was collected every 700
    allocations, a few times per request. So everything alive once the process is set up
    is frozen (moved to a generation the collector never walks) and the youngest
    generation is collected less often (``gc_young_threshold``). Reference counting still
    frees almost everything at once; cycles wait a little longer, the older generations
    keep Python's own ratios.

    Not too much less often: a young collection stops the event loop for as long as it
    takes to walk what was allocated since the last one, and grpc.aio leaves five or six
    objects in a reference cycle on every call it serves (its method lookup's closure),
    which only the collector frees. At 20,000 allocations each collection of a gRPC
    server under load paused it 7-28 ms, and at 80 % of its peak rate the backlog of one
    pause took a few hundred milliseconds to drain (the reserve path's p99); at 5,000 the
    pauses were 1.3-4 ms, with no difference in CPU per call beyond the noise (reserve
    path and coupon claims, docs/benchmarks.md, session 8)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, oldest)


def run(settings: ServiceSettings, roles: Mapping[str, Role], argv: list[str]) -> int:
    """``python -m services.<name> <role>``: run one role until a signal stops it."""
    if len(argv) != 1 or argv[0] not in roles:
        print(
            f"usage: python -m services.{settings.service_name} {{{'|'.join(roles)}}}",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.service_name, settings.log_level)
    role = roles[argv[0]]

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("starting", role=argv[0])
        tune_garbage_collector(settings)
        await role(stop)
        log.info("stopped", role=argv[0])

    uvloop.run(main())
    return 0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's stop event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(app: FastAPI, settings: ServiceSettings, stop: asyncio.Event) -> None:
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop="none",
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
        # Longer than clients keep an idle connection (httpx: 5 s, browsers and proxies
        # more): a server that closes first races the client's next request on that
        # connection, which then fails with "server disconnected" (seen in tests).
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def run_all(stop: asyncio.Event, tasks: Mapping[str, Awaitable[None]]) -> None:
    """Run a worker's loops together; if one fails, stop the others and fail the process
    (the process manager restarts it) rather than limp on without it."""
    running: dict[asyncio.Future[None], str] = {
        asyncio.ensure_future(task): name for name, task in tasks.items()
    }
    stopper: asyncio.Future[None] = asyncio.ensure_future(_wait(stop))
    done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
    failure: BaseException | None = None
    for task in done:
        if task is not stopper and task.exception() is not None:
            failure = task.exception()
            log.error("worker loop failed", loop=running[task], exc_info=failure)
    stop.set()
    await asyncio.gather(*running, return_exceptions=True)
    stopper.cancel()
    if failure is not None:
        raise failure


async def until_first_done(*coroutines: Awaitable[object]) -> None:
    """Run ``coroutines`` side by side until the first of them ends; the others are then
    cancelled and awaited before this returns. What each one raised is dropped: the caller
    asks its own state what happened (a connection closed, a client dropped)."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait(stop: asyncio.Event) -> None:
    await stop.wait()


async def run_periodically(
    seconds: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]]
) -> None:
    """Run ``work`` every ``seconds`` until stopped; a failing round is logged and the
    next round tries again (periodic housekeeping must not take its process down)."""
    while not stop.is_set():
        try:
            await work()
        except Exception as error:
            log.error("periodic work failed", work=getattr(work, "__name__", "?"), exc_info=error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
