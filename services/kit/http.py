"""The FastAPI application every service's HTTP entry point is built from.

It brings: a request id on every request and response (and as the correlation id of the
events the request causes), problem+json (RFC 9457) for every error, never a traceback
(a database that cannot be reached is a 503 to retry, not a 500), a bound on the request
body (``http_max_body_bytes``: 413), ``/healthz`` and ``/readyz``, ``/metrics`` for
Prometheus, and the verified caller as a typed dependency (:data:`CurrentCaller`), who is
also recorded as the actor of every event the request causes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit import metrics
from services.kit.context import MessageContext, bind_actor, message_context
from services.kit.db import DATABASE_OUTAGES, DATABASE_UNAVAILABLE
from services.kit.errors import (
    KitError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from services.kit.identity import Caller, TokenVerifier
from services.kit.ids import new_id
from services.kit.logging import get_logger
from services.kit.settings import ServiceSettings

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "x-request-id"
TRACE_HEADERS = ("traceparent", "tracestate")
"""W3C trace context: carried from the request into every event it causes."""

ReadinessCheck = Callable[[], Awaitable[object]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def problem(status: int, title: str, detail: str, request: Request, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request.scope.get("request_id", ""),
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class BodyLimitMiddleware:
    """Refuses a request body larger than ``max_bytes`` (413 problem+json): at once when
    ``Content-Length`` says so, else when the streamed body passes the bound (chunked
    uploads declare no length). Nothing larger is ever buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self._max:
            response = problem(413, "Request too large", self._detail(), Request(scope, receive))
            await response(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    # An HTTPException, because FastAPI turns any other error raised while
                    # it reads the body into a 400.
                    raise StarletteHTTPException(413, self._detail())
            return message

        await self._app(scope, bounded, send)

    def _detail(self) -> str:
        return f"the request body is larger than {self._max} bytes"


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs the hot path a task per request)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(REQUEST_ID_HEADER.encode(), b"").decode()
        request_id = incoming[:128] if incoming else str(new_id())
        trace = {
            name: headers[name.encode()].decode()[:512]
            for name in TRACE_HEADERS
            if name.encode() in headers
        }
        scope["request_id"] = request_id
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", []).append(
                    (REQUEST_ID_HEADER.encode(), request_id.encode())
                )
            await send(message)

        context = MessageContext(
            correlation_id=request_id, causation_id=request_id, trace_context=trace
        )
        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            message_context(context),
        ):
            try:
                await self._app(scope, receive, send_with_id)
            except Exception as error:
                # Answered here, inside the request's context, rather than by Starlette's
                # outermost error middleware: so the 500 carries the request id header and
                # the log line its request id. No detail of the error reaches the client.
                log.error("unhandled error", path=scope.get("path", ""), exc_info=error)
                if response_started:
                    raise
                response = problem(
                    500,
                    "Internal error",
                    "the error was logged with this request id",
                    Request(scope),
                )
                await response(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                method = scope["method"]
                metrics.HTTP_REQUESTS.labels(self._service, method, path, str(status)).inc()
                metrics.HTTP_LATENCY.labels(self._service, method, path).observe(
                    time.perf_counter() - started
                )


_bearer = HTTPBearer(auto_error=False, description="A JWT minted by `livecommerce token`")


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The verified caller, recorded as the actor of the events the request causes.
    (Async on purpose: a sync dependency runs in a thread, whose context the request's
    handler would not see.)"""
    if credentials is None:
        raise UnauthenticatedError("missing bearer token")
    verifier: TokenVerifier = request.app.state.verifier
    if verifier.may_block:
        caller = await asyncio.to_thread(verifier.verify, credentials.credentials)
    else:
        caller = verifier.verify(credentials.credentials)
    bind_actor(caller.subject)
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Page:
    """One page of a list answer: ``?limit=&offset=`` (at most MAX_PAGE_SIZE items)."""

    limit: int
    offset: int


def _page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Page:
    return Page(limit, offset)


PageQuery = Annotated[Page, Depends(_page)]


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    app.state.readiness[name] = check


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KitError)
    async def kit_error(request: Request, error: KitError) -> JSONResponse:
        status = int(error.http_status)
        if status >= 500:  # the caller retries; the operator needs to know what refused
            log.warning(
                "answered with a server error",
                path=request.url.path,
                status=status,
                error=type(error).__name__,
                detail=error.detail,
            )
        response = problem(status, error.title, error.detail, request)
        if isinstance(error, ResourceExhaustedError) and error.retry_after_seconds is not None:
            response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("database unavailable", path=request.url.path, error=repr(error))
        return await kit_error(request, UnavailableError(DATABASE_UNAVAILABLE))

    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, database_unavailable)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in error.errors()
        ]
        return problem(
            422, "Invalid request", "the request does not match the schema", request, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem(error.status_code, str(error.detail), str(error.detail), request)


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    lifespan: Lifespan | None = None,
    verifier: TokenVerifier | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            yield
            return
        async with lifespan(app):
            yield

    app = FastAPI(title=title, version="1", lifespan=run)
    app.state.verifier = verifier or TokenVerifier(settings)
    app.state.readiness = {}
    _install_error_handlers(app)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness of every dependency")
    async def readyz(request: Request) -> JSONResponse:
        failures: dict[str, str] = {}
        for name, check in app.state.readiness.items():
            try:
                await check()
            except Exception as error:
                failures[name] = f"{type(error).__name__}: {error}"
        if failures:
            return problem(503, "Not ready", "a dependency is not ready", request, checks=failures)
        return JSONResponse({"status": "ready", "checks": sorted(app.state.readiness)})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
    return app
