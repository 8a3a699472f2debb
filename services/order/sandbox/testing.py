"""Helpers for tests that need the gateway on a real port: serve an ASGI app in process on
a socket bound to a free port, a clock the test moves, and a receiver that records the
notifications posted to it (answering with statuses the test chooses, to make the gateway
retry)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the test owns the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_free_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1, to learn the URL before serving on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan included) on ``sock`` (a free port by default) and yield its
    base URL; the socket is closed when serving ends."""
    sock = sock or bind_free_port()
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.01)
        yield base_url_of(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()


class MovableClock:
    """Real time from an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


@dataclass(frozen=True)
class ReceivedNotification:
    headers: dict[str, str]
    body: bytes


@dataclass
class NotificationReceiver:
    """An endpoint at ``/notify`` that keeps what it receives, in order of arrival."""

    answers: list[int] = field(default_factory=list)
    """Statuses to answer with, first to last; 204 once they run out."""
    received: list[ReceivedNotification] = field(default_factory=list)
    patience_seconds: float = 10.0
    """How long :meth:`wait_for` waits before it fails the test."""
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/notify", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        async with self._arrived:
            self.received.append(ReceivedNotification(dict(request.headers), body))
            self._arrived.notify_all()
        status = self.answers.pop(0) if self.answers else 204
        return Response(status_code=status)

    async def wait_for(self, count: int) -> list[ReceivedNotification]:
        """The first ``count`` received, waiting for them to arrive."""
        async with asyncio.timeout(self.patience_seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]
