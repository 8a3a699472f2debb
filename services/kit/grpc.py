"""gRPC servers and clients on grpc.aio, the same for every service.

Servers serve the standard health-checking service and reflection, verify the caller's
bearer token on every call but health and reflection, make the caller available to the
servicer through :func:`current_caller`, and translate :class:`KitError` into its gRPC
status (never UNKNOWN with a traceback), and a database that cannot be reached into
UNAVAILABLE. Clients add a service identity to every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.kit import metrics
from services.kit.context import MessageContext, message_context
from services.kit.db import database_outage
from services.kit.errors import KitError, ResourceExhaustedError, UnauthenticatedError
from services.kit.identity import Caller, TokenVerifier
from services.kit.logging import get_logger

log = get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of a call, for servicer method signatures."""

_caller: ContextVar[Caller | None] = ContextVar("grpc_caller", default=None)
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_caller() -> Caller:
    """The verified caller of the gRPC call in progress."""
    caller = _caller.get()
    if caller is None:
        raise UnauthenticatedError("no verified caller for this call")
    return caller


class KitServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier, service: str) -> None:
        self._verifier = verifier
        self._service = service
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:  # built once per method, not once per call
            return wrapped  # type: ignore[no-any-return]
        handler: Any = await continuation(details)
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler  # type: ignore[no-any-return]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped  # type: ignore[no-any-return]

    def _wrap(self, method: str, handler: Any) -> Any:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _enter(self, context: Context) -> MessageContext:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        authorization = metadata.get("authorization")
        if self._verifier.may_block:
            caller = await asyncio.to_thread(self._verifier.verify_header, authorization)
        else:
            caller = self._verifier.verify_header(authorization)
        _caller.set(caller)
        request_id = metadata.get("x-request-id") or ""
        correlation = metadata.get("x-correlation-id") or request_id
        return MessageContext(
            correlation_id=correlation or context.peer(),
            causation_id=request_id or correlation or context.peer(),
            actor=caller.subject,
        )

    def _unary(
        self, method: str, behavior: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        answered = metrics.GRPC_REQUESTS.labels(self._service, method, "OK")

        async def call(request: Any, context: Context) -> Any:
            try:
                with message_context(await self._enter(context)):
                    response = await behavior(request, context)
            except Exception as error:
                await self._abort(method, context, error)
            answered.inc()
            return response

        return call

    def _stream(
        self, method: str, behavior: Callable[[Any, Context], AsyncIterator[Any]]
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                with message_context(await self._enter(context)):
                    async for response in behavior(request, context):
                        yield response
            except Exception as error:
                await self._abort(method, context, error)
            metrics.GRPC_REQUESTS.labels(self._service, method, "OK").inc()

        return call

    async def _abort(self, method: str, context: Context, error: Exception) -> None:
        if isinstance(error, grpc.aio.AbortError):
            raise error
        if (outage := database_outage(error)) is not None:
            log.warning("database unavailable in gRPC call", method=method, error=repr(error))
            error = outage
        if isinstance(error, KitError):
            code, detail = grpc.StatusCode[error.grpc_code], error.detail
            if int(error.http_status) >= 500:  # the caller retries; the operator needs to know
                log.warning(
                    "answered with a server error",
                    method=method,
                    code=code.name,
                    error=type(error).__name__,
                    detail=detail,
                )
            if isinstance(error, ResourceExhaustedError) and error.retry_after_seconds:
                context.set_trailing_metadata((("retry-after", str(error.retry_after_seconds)),))
        else:
            log.error("unhandled error in gRPC call", method=method, exc_info=error)
            code, detail = grpc.StatusCode.INTERNAL, "internal error; it was logged"
        metrics.GRPC_REQUESTS.labels(self._service, method, code.name).inc()
        await context.abort(code, detail)


CHANNEL_OPTIONS = [("grpc.lb_policy_name", "round_robin")]
"""Calls are spread over every address the target resolves to (``dns:///inventory-grpc:50101``
on a headless Kubernetes Service gives one per pod), not all sent down the first one."""

SERVER_OPTIONS = [
    ("grpc.max_connection_age_ms", 5 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 30 * 1000),
]
"""A server closes each client connection (gracefully: calls in flight finish) after about
five minutes, so clients resolve the target again and reach the pods added since."""


async def start_grpc_server(
    *,
    service: str,
    address: str,
    verifier: TokenVerifier,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    max_message_bytes: int = 1024 * 1024,
) -> tuple[grpc.aio.Server, int]:
    """Start a server with health and reflection; return it and the port it bound.
    Requests larger than ``max_message_bytes`` are refused before they are parsed."""
    server = grpc.aio.server(
        interceptors=[KitServerInterceptor(verifier, service)],
        options=[("grpc.max_receive_message_length", max_message_bytes), *SERVER_OPTIONS],
    )
    register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(address)
    await server.start()
    for name in ["", *service_names]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("grpc server started", address=address, port=port, services=list(service_names))
    return server, port


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add("authorization", f"Bearer {token}")
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# Two classes, not one with both bases: grpc.aio files an interceptor under the first call
# kind it matches only, so a combined one would leave streaming calls without the token.
class _UnaryBearer(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token()), request)


class _StreamBearer(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token()), request)


def authenticated_channel(target: str, token: Callable[[], str]) -> grpc.aio.Channel:
    """A channel whose every call carries ``Bearer <token()>`` (a service identity)."""
    return grpc.aio.insecure_channel(
        target, options=CHANNEL_OPTIONS, interceptors=[_UnaryBearer(token), _StreamBearer(token)]
    )
