"""Inventory with its database down (a Postgres address that refuses connections; Redis is
the real one): every call is answered UNAVAILABLE over gRPC and 503 problem+json over HTTP,
a status to retry, never INTERNAL or 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
import pytest_asyncio
import structlog

from livecommerce.inventory.v1 import inventory_pb2 as pb
from livecommerce.inventory.v1 import inventory_pb2_grpc
from services.inventory.bootstrap import assemble
from services.inventory.entrypoints.grpc import InventoryServicer
from services.inventory.entrypoints.http import router
from services.inventory.settings import InventorySettings
from services.kit.db import create_pool
from services.kit.grpc import authenticated_channel, start_grpc_server
from services.kit.http import create_app
from services.kit.identity import Role, TokenIssuer, TokenVerifier
from services.kit.redis import create_redis

if TYPE_CHECKING:
    from livecommerce.inventory.v1.inventory_pb2_grpc import InventoryServiceAsyncStub as Stub

UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/inventory"
"""Port 1: nothing listens, every connection attempt is refused at once."""
MERCHANT = "merchant-1"


@dataclass(frozen=True)
class DownStack:
    stub: Stub
    http: httpx.AsyncClient
    issuer: TokenIssuer


@pytest_asyncio.fixture
async def down(inventory_settings: InventorySettings) -> AsyncIterator[DownStack]:
    settings = inventory_settings.model_copy(update={"postgres_dsn": UNREACHABLE_DSN})
    pool = await create_pool(UNREACHABLE_DSN, min_size=0)  # connects on first use
    redis = create_redis(settings.redis_url)
    parts = assemble(settings, pool, redis)
    servicer = InventoryServicer(parts.stock, parts.flash_sales)
    server, port = await start_grpc_server(
        service="inventory-down-test",
        address="127.0.0.1:0",
        verifier=TokenVerifier(settings),
        register=lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(servicer, s),
        service_names=[pb.DESCRIPTOR.services_by_name["InventoryService"].full_name],
    )
    app = create_app(settings, title="Inventory", routers=[router])
    app.state.inventory = parts
    issuer = TokenIssuer(settings)
    channel = authenticated_channel(f"127.0.0.1:{port}", lambda: issuer.service_token("order"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
            yield DownStack(inventory_pb2_grpc.InventoryServiceStub(channel), http, issuer)
    finally:
        await channel.close()
        await server.stop(None)
        await redis.aclose()
        await pool.close()


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    with structlog.testing.capture_logs():
        yield


async def refusal(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    code: grpc.StatusCode = refused.value.code()
    return code


async def test_every_grpc_call_is_unavailable_while_the_database_is_down(
    down: DownStack,
) -> None:
    sale = pb.GetSaleRequest(merchant_id=MERCHANT, sale_id="drop-1")
    hold = pb.HoldRequest(merchant_id=MERCHANT, hold_id="order-1")

    codes = [
        await refusal(
            down.stub.Reserve(
                pb.ReserveRequest(
                    merchant_id=MERCHANT,
                    sale_id="drop-1",
                    user_id="buyer-1",
                    quantity=1,
                    hold_id="order-1",
                )
            )
        ),
        await refusal(down.stub.Confirm(hold)),
        await refusal(down.stub.Release(pb.ReleaseRequest(merchant_id=MERCHANT, hold_id="o-1"))),
        await refusal(down.stub.GetStock(pb.GetStockRequest(merchant_id=MERCHANT, sku_id="S"))),
        await refusal(down.stub.GetSale(sale)),
        await refusal(down.stub.EndSale(sale)),
        await refusal(down.stub.StreamStock(sale).read()),
    ]

    assert codes == [grpc.StatusCode.UNAVAILABLE] * 7


async def test_every_http_call_is_a_503_problem_while_the_database_is_down(
    down: DownStack,
) -> None:
    token = down.issuer.mint("admin-1", [Role.MERCHANT_ADMIN], MERCHANT)
    auth = {"Authorization": f"Bearer {token}"}

    responses = [
        await down.http.post("/v1/skus/S/receipts", json={"quantity": 1}, headers=auth),
        await down.http.get("/v1/skus/S", headers=auth),
        await down.http.get("/v1/sales/drop-1", headers=auth),
        await down.http.post("/v1/sales/drop-1/end", headers=auth),
    ]

    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"] == "Service unavailable"
