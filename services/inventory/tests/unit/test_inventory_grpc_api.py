"""Inventory's gRPC GetStock on a real in-process server over the in-memory event store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import grpc
import pytest
import pytest_asyncio
from pydantic import SecretStr

from livecommerce.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.application.handlers import receive_stock
from services.inventory.domain.stock import ReceiveStock
from services.inventory.entrypoints.grpc import InventoryServicer
from services.inventory.settings import InventorySettings
from services.kit.eventstore import InMemoryEventStore
from services.kit.grpc import authenticated_channel, start_grpc_server
from services.kit.identity import Role, TokenIssuer, TokenVerifier
from services.kit.settings import Environment

SETTINGS = InventorySettings(
    environment=Environment.TEST,
    jwt_signing_key=SecretStr("inventory-unit-grpc-signing-key-long-enough-for-hs256"),
    jwt_issuer="inventory-unit",
    jwt_audience="inventory-unit",
)
ISSUER = TokenIssuer(SETTINGS)


@dataclass(frozen=True)
class Inventory:
    target: str
    stock: EventSourcedStockRepository


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def inventory() -> AsyncIterator[Inventory]:
    stock = EventSourcedStockRepository(InMemoryEventStore())
    server, port = await start_grpc_server(
        service=SETTINGS.service_name,
        address="127.0.0.1:0",
        verifier=TokenVerifier(SETTINGS),
        register=lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
            InventoryServicer(stock), s
        ),
        service_names=[inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name],
    )
    try:
        yield Inventory(target=f"127.0.0.1:{port}", stock=stock)
    finally:
        await server.stop(None)


async def stocked(inventory: Inventory, merchant_id: str, quantity: int) -> str:
    """A SKU no other test uses, with ``quantity`` received."""
    sku_id = f"sku-{uuid4().hex[:12]}"
    await receive_stock(ReceiveStock(merchant_id, sku_id, quantity), inventory.stock)
    return sku_id


async def get_stock(
    inventory: Inventory, token: str, sku_id: str, merchant_id: str = ""
) -> inventory_pb2.StockLevel:
    async with authenticated_channel(inventory.target, lambda: token) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        return await stub.GetStock(
            inventory_pb2.GetStockRequest(sku_id=sku_id, merchant_id=merchant_id)
        )


async def test_answers_a_service_with_the_stock_of_the_merchant_it_names(
    inventory: Inventory,
) -> None:
    sku_id = await stocked(inventory, "merchant-1", 9)

    level = await get_stock(inventory, ISSUER.service_token("orders"), sku_id, "merchant-1")

    assert level == inventory_pb2.StockLevel(
        sku_id=sku_id, merchant_id="merchant-1", on_hand=9, version=1
    )


async def test_answers_a_merchant_admin_with_its_own_stock_without_naming_the_merchant(
    inventory: Inventory,
) -> None:
    sku_id = await stocked(inventory, "merchant-1", 4)
    token = ISSUER.mint("admin-1", [Role.MERCHANT_ADMIN], merchant_id="merchant-1")

    level = await get_stock(inventory, token, sku_id)

    assert (level.merchant_id, level.on_hand) == ("merchant-1", 4)


async def test_refuses_a_service_that_names_no_merchant(inventory: Inventory) -> None:
    sku_id = await stocked(inventory, "merchant-1", 4)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await get_stock(inventory, ISSUER.service_token("orders"), sku_id)

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_hides_another_merchants_stock_as_not_found(inventory: Inventory) -> None:
    sku_id = await stocked(inventory, "merchant-1", 4)
    token = ISSUER.mint("admin-2", [Role.MERCHANT_ADMIN], merchant_id="merchant-2")

    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await get_stock(inventory, token, sku_id, "merchant-1")

    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND


async def test_refuses_a_viewer(inventory: Inventory) -> None:
    sku_id = await stocked(inventory, "merchant-1", 4)
    token = ISSUER.mint("viewer-1", [Role.VIEWER], merchant_id="merchant-1")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await get_stock(inventory, token, sku_id)

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_answers_an_unknown_sku_with_not_found(inventory: Inventory) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await get_stock(inventory, ISSUER.service_token("orders"), "sku-never", "merchant-1")

    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == "SKU sku-never not found"


async def test_answers_an_invalid_sku_id_with_invalid_argument(inventory: Inventory) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await get_stock(inventory, ISSUER.service_token("orders"), "red shirt", "merchant-1")

    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
