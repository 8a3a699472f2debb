"""The kernel's gRPC server on a real in-process server: auth, caller, errors, health."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from livecommerce.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from services.kit.context import MessageContext, current_context
from services.kit.errors import NotFoundError, PreconditionFailedError, UnauthenticatedError
from services.kit.grpc import Context, authenticated_channel, current_caller, start_grpc_server
from services.kit.identity import Caller, Role, TokenIssuer, TokenVerifier
from services.kit.settings import Environment, ServiceSettings

SECRET = "the-database-password-is-hunter2"
STREAM_SERVICE = "kit.unit.Streams"
WATCH = f"/{STREAM_SERVICE}/Watch"
INVENTORY_SERVICE = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name

SETTINGS = ServiceSettings(
    service_name="kit-unit-grpc",
    environment=Environment.TEST,
    jwt_signing_key=SecretStr("kit-unit-grpc-signing-key-long-enough-for-hs256-tokens"),
    jwt_issuer="kit-unit-grpc",
    jwt_audience="kit-unit-grpc",
)
ISSUER = TokenIssuer(SETTINGS)


@dataclass
class Seen:
    callers: list[Caller] = field(default_factory=list)
    contexts: list[MessageContext] = field(default_factory=list)

    def record(self) -> Caller:
        caller = current_caller()
        self.callers.append(caller)
        self.contexts.append(current_context())
        return caller


class StockServicer:
    """GetStock answers by SKU id: ``missing`` is not found, ``crash`` fails, ``abort``
    aborts, ``db-refused`` and ``db-dropped`` lose the database. Registered as a generic
    handler so that only the method under test exists."""

    def __init__(self, seen: Seen) -> None:
        self._seen = seen

    async def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        caller = self._seen.record()
        if request.sku_id == "missing":
            raise NotFoundError("SKU missing not found")
        if request.sku_id == "crash":
            raise RuntimeError(f"connection failed: {SECRET}")
        if request.sku_id == "db-refused":
            raise ConnectionRefusedError(111, f"Connect call failed {SECRET}")
        if request.sku_id == "db-dropped":
            raise asyncpg.exceptions.ConnectionDoesNotExistError(f"closed mid-call {SECRET}")
        if request.sku_id == "abort":
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "aborted by the servicer")
        return inventory_pb2.StockLevel(
            sku_id=request.sku_id, merchant_id=caller.merchant_id or "", on_hand=7, version=3
        )


def watch_handler(seen: Seen) -> grpc.GenericRpcHandler:
    """A server-streaming method: three levels, or one then a precondition failure."""

    async def watch(
        request: inventory_pb2.GetStockRequest, context: Context
    ) -> AsyncIterator[inventory_pb2.StockLevel]:
        seen.record()
        for version in (1, 2, 3):
            yield inventory_pb2.StockLevel(sku_id=request.sku_id, on_hand=version, version=version)
            if request.sku_id == "closing":
                raise PreconditionFailedError("the sale closed")

    handler: Any = grpc.unary_stream_rpc_method_handler(
        watch,
        request_deserializer=inventory_pb2.GetStockRequest.FromString,
        response_serializer=inventory_pb2.StockLevel.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(STREAM_SERVICE, {"Watch": handler})


@dataclass(frozen=True)
class Server:
    target: str
    seen: Seen


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running() -> AsyncIterator[Server]:
    seen = Seen()

    def register(server: grpc.aio.Server) -> None:
        servicer = StockServicer(seen)
        get_stock: Any = grpc.unary_unary_rpc_method_handler(
            servicer.GetStock,
            request_deserializer=inventory_pb2.GetStockRequest.FromString,
            response_serializer=inventory_pb2.StockLevel.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(INVENTORY_SERVICE, {"GetStock": get_stock}),)
        )
        server.add_generic_rpc_handlers((watch_handler(seen),))

    server, port = await start_grpc_server(
        service=SETTINGS.service_name,
        address="127.0.0.1:0",
        verifier=TokenVerifier(SETTINGS),
        register=register,
        service_names=[INVENTORY_SERVICE, STREAM_SERVICE],
    )
    try:
        yield Server(target=f"127.0.0.1:{port}", seen=seen)
    finally:
        await server.stop(None)


@pytest.fixture
def server(running: Server) -> Server:
    running.seen.callers.clear()
    running.seen.contexts.clear()
    return running


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Capture log entries instead of rendering tracebacks (rendering takes seconds)."""
    with structlog.testing.capture_logs():
        yield


def merchant_token() -> str:
    return ISSUER.mint("admin-1", [Role.MERCHANT_ADMIN], merchant_id="merchant-1")


async def get_stock(
    channel: grpc.aio.Channel, sku_id: str, metadata: tuple[tuple[str, str], ...] = ()
) -> inventory_pb2.StockLevel:
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    return await stub.GetStock(inventory_pb2.GetStockRequest(sku_id=sku_id), metadata=metadata)


async def test_reports_serving_health_to_a_caller_without_a_token(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        inventory = await health.Check(health_pb2.HealthCheckRequest(service=INVENTORY_SERVICE))

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert inventory.status == health_pb2.HealthCheckResponse.SERVING


async def test_refuses_a_call_without_a_token_as_unauthenticated(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_stock(channel, "sku-1")

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == "missing bearer token"
    assert server.seen.callers == []


async def test_refuses_a_call_with_an_invalid_token_as_unauthenticated(server: Server) -> None:
    async with authenticated_channel(server.target, lambda: "not.a.token") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_stock(channel, "sku-1")

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.seen.callers == []


async def test_answers_a_call_with_a_valid_token_and_gives_the_servicer_its_caller(
    server: Server,
) -> None:
    async with authenticated_channel(server.target, merchant_token) as channel:
        level = await get_stock(channel, "sku-1")

    assert level == inventory_pb2.StockLevel(
        sku_id="sku-1", merchant_id="merchant-1", on_hand=7, version=3
    )
    assert server.seen.callers == [
        Caller("admin-1", frozenset({Role.MERCHANT_ADMIN}), "merchant-1")
    ]


async def test_a_dns_target_as_kubernetes_names_a_headless_service_reaches_the_server(
    server: Server,
) -> None:
    port = server.target.rsplit(":", 1)[1]
    async with authenticated_channel(f"dns:///localhost:{port}", merchant_token) as channel:
        level = await get_stock(channel, "sku-1")

    assert level.on_hand == 7


async def test_takes_a_fresh_token_for_every_call(server: Server) -> None:
    subjects = iter(["service:first", "service:second"])

    def token() -> str:
        return ISSUER.mint(next(subjects), [Role.SERVICE])

    async with authenticated_channel(server.target, token) as channel:
        await get_stock(channel, "sku-1")
        await get_stock(channel, "sku-2")

    assert [c.subject for c in server.seen.callers] == ["service:first", "service:second"]


async def test_makes_the_request_and_correlation_ids_the_context_of_the_call(
    server: Server,
) -> None:
    async with authenticated_channel(server.target, merchant_token) as channel:
        await get_stock(channel, "sku-1", (("x-request-id", "req-1"),))
        await get_stock(
            channel, "sku-1", (("x-request-id", "req-2"), ("x-correlation-id", "corr-2"))
        )

    first, second = server.seen.contexts
    assert (first.correlation_id, first.causation_id) == ("req-1", "req-1")
    assert (second.correlation_id, second.causation_id) == ("corr-2", "req-2")


async def test_answers_a_kit_error_with_its_status_and_detail(server: Server) -> None:
    async with authenticated_channel(server.target, merchant_token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await get_stock(channel, "missing")

    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert failed.value.details() == "SKU missing not found"


async def test_answers_an_unexpected_error_as_internal_without_revealing_it(
    server: Server,
) -> None:
    async with authenticated_channel(server.target, merchant_token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await get_stock(channel, "crash")

    assert failed.value.code() == grpc.StatusCode.INTERNAL
    details = failed.value.details() or ""
    assert details == "internal error; it was logged"
    assert SECRET not in details
    assert "RuntimeError" not in (failed.value.debug_error_string() or "")


@pytest.mark.parametrize("sku_id", ["db-refused", "db-dropped"])
async def test_answers_a_database_that_cannot_be_reached_as_unavailable(
    server: Server, sku_id: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with authenticated_channel(server.target, merchant_token) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await get_stock(channel, sku_id)

    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details() == "the database is unavailable; retry later"
    assert SECRET not in (failed.value.debug_error_string() or "")
    [answered] = [e for e in logs if e["event"] == "answered with a server error"]
    assert (answered["log_level"], answered["code"]) == ("warning", "UNAVAILABLE")


async def test_keeps_the_status_of_a_servicer_that_aborts_by_itself(server: Server) -> None:
    async with authenticated_channel(server.target, merchant_token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await get_stock(channel, "abort")

    assert failed.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert failed.value.details() == "aborted by the servicer"


def watch_method(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryStreamMultiCallable[inventory_pb2.GetStockRequest, inventory_pb2.StockLevel]:
    return channel.unary_stream(
        WATCH,
        request_serializer=inventory_pb2.GetStockRequest.SerializeToString,
        response_deserializer=inventory_pb2.StockLevel.FromString,
    )


async def collect(
    call: AsyncIterable[inventory_pb2.StockLevel], into: list[inventory_pb2.StockLevel]
) -> None:
    async for level in call:
        into.append(level)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_streams_responses_to_a_caller_with_a_valid_token(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = watch_method(channel)(
            inventory_pb2.GetStockRequest(sku_id="s"), metadata=bearer(merchant_token())
        )
        levels = [level async for level in call]

    assert [level.version for level in levels] == [1, 2, 3]
    assert [c.subject for c in server.seen.callers] == ["admin-1"]


async def test_refuses_a_stream_without_a_token_as_unauthenticated(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = watch_method(channel)(inventory_pb2.GetStockRequest(sku_id="s"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            _ = [level async for level in call]

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.seen.callers == []


async def test_ends_a_stream_with_the_status_of_a_kit_error_raised_midway(server: Server) -> None:
    received: list[inventory_pb2.StockLevel] = []
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = watch_method(channel)(
            inventory_pb2.GetStockRequest(sku_id="closing"), metadata=bearer(merchant_token())
        )
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await collect(call, received)

    assert [level.version for level in received] == [1]
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failed.value.details() == "the sale closed"


async def test_authenticated_channel_sends_its_token_on_streaming_calls_too(
    server: Server,
) -> None:
    async with authenticated_channel(server.target, merchant_token) as channel:
        call = watch_method(channel)(inventory_pb2.GetStockRequest(sku_id="s"))
        levels = [level async for level in call]

    assert [level.version for level in levels] == [1, 2, 3]


def test_has_no_caller_outside_a_call() -> None:
    with pytest.raises(UnauthenticatedError, match="no verified caller"):
        current_caller()
