"""The kernel's gRPC server and the same guarantees as HTTP: the verified caller is the
actor of the work, a rate limit is RESOURCE_EXHAUSTED with a ``retry-after`` trailer, and a
request larger than the bound is refused before it is parsed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest_asyncio

from livecommerce.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from services.kit.context import current_context
from services.kit.grpc import Context, authenticated_channel, start_grpc_server
from services.kit.identity import Role, TokenVerifier
from services.kit.ratelimit import RateLimitedError
from services.kit.settings import ServiceSettings
from tests.security.world import token_for

SERVICE = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name


async def get_stock(
    request: inventory_pb2.GetStockRequest, context: Context
) -> inventory_pb2.StockLevel:
    if request.sku_id == "limited":
        raise RateLimitedError("too many", retry_after_seconds=7)
    return inventory_pb2.StockLevel(sku_id=current_context().actor)


@pytest_asyncio.fixture
async def target() -> AsyncIterator[str]:
    def register(server: grpc.aio.Server) -> None:
        handler: Any = grpc.unary_unary_rpc_method_handler(
            get_stock,
            request_deserializer=inventory_pb2.GetStockRequest.FromString,
            response_serializer=inventory_pb2.StockLevel.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"GetStock": handler}),)
        )

    server, port = await start_grpc_server(
        service="grpc-limits",
        address="127.0.0.1:0",
        verifier=TokenVerifier(ServiceSettings()),
        register=register,
        service_names=[SERVICE],
        max_message_bytes=4096,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def channel(target: str, role: Role = Role.SERVICE, subject: str = "order") -> grpc.aio.Channel:
    token = token_for(role, "m1", subject)
    return authenticated_channel(target, lambda: token)


async def call(target: str, sku_id: str) -> grpc.aio.UnaryUnaryCall[Any, Any]:
    async with channel(target) as ch:
        stub = inventory_pb2_grpc.InventoryServiceStub(ch)
        reply = stub.GetStock(inventory_pb2.GetStockRequest(sku_id=sku_id))
        with contextlib.suppress(grpc.aio.AioRpcError):  # the test reads the status itself
            await reply
        return reply


async def test_the_verified_caller_is_the_actor_of_the_call(target: str) -> None:
    async with channel(target) as ch:
        stub = inventory_pb2_grpc.InventoryServiceStub(ch)
        reply = await stub.GetStock(inventory_pb2.GetStockRequest(sku_id="any"))

    assert reply.sku_id == "service:order"


async def test_a_rate_limit_is_resource_exhausted_with_a_retry_after_trailer(target: str) -> None:
    reply = await call(target, "limited")

    assert await reply.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "7") in list(await reply.trailing_metadata() or ())


async def test_a_request_past_the_size_bound_is_refused(target: str) -> None:
    reply = await call(target, "x" * 10_000)

    assert await reply.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
