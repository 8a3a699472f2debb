"""Inventory's HTTP routes over the in-memory event store (no lifespan, no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.entrypoints.http import router
from services.inventory.settings import InventorySettings
from services.kit.eventstore import InMemoryEventStore
from services.kit.http import create_app
from services.kit.identity import Role, TokenIssuer
from services.kit.settings import Environment

SETTINGS = InventorySettings(
    environment=Environment.TEST,
    jwt_signing_key=SecretStr("inventory-unit-http-signing-key-long-enough-for-hs256"),
    jwt_issuer="inventory-unit",
    jwt_audience="inventory-unit",
)
ISSUER = TokenIssuer(SETTINGS)


def auth(*roles: Role, merchant_id: str | None = "merchant-1") -> dict[str, str]:
    token = ISSUER.mint("user-1", roles, merchant_id=merchant_id)
    return {"authorization": f"Bearer {token}"}


ADMIN = auth(Role.MERCHANT_ADMIN)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest_asyncio.fixture
async def client(store: InMemoryEventStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS, title="Inventory", routers=[router])
    app.state.stock = EventSourcedStockRepository(store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory.test") as client:
        yield client


async def test_receives_stock_and_answers_with_the_new_level(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/skus/sku-1/receipts", json={"quantity": 5, "note": "dock 4"}, headers=ADMIN
    )

    assert response.status_code == 201
    assert response.json() == {
        "sku_id": "sku-1",
        "merchant_id": "merchant-1",
        "on_hand": 5,
        "version": 1,
    }


async def test_accumulates_receipts_and_reads_the_level_back(client: httpx.AsyncClient) -> None:
    await client.post("/v1/skus/sku-1/receipts", json={"quantity": 5}, headers=ADMIN)
    await client.post("/v1/skus/sku-1/receipts", json={"quantity": 2}, headers=auth(Role.OPERATOR))

    response = await client.get("/v1/skus/sku-1", headers=auth(Role.OPERATOR))

    assert response.status_code == 200
    assert response.json()["on_hand"] == 7
    assert response.json()["version"] == 2


@pytest.mark.parametrize("role", [Role.VIEWER, Role.HOST, Role.SERVICE])
async def test_refuses_a_receipt_from_a_role_that_may_not_receive_stock(
    client: httpx.AsyncClient, store: InMemoryEventStore, role: Role
) -> None:
    response = await client.post(
        "/v1/skus/sku-1/receipts", json={"quantity": 5}, headers=auth(role)
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert await store.last_position() == 0


async def test_refuses_a_receipt_from_a_caller_bound_to_no_merchant(
    client: httpx.AsyncClient, store: InMemoryEventStore
) -> None:
    response = await client.post(
        "/v1/skus/sku-1/receipts",
        json={"quantity": 5},
        headers=auth(Role.MERCHANT_ADMIN, merchant_id=None),
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "this action needs a merchant-scoped identity"
    assert await store.last_position() == 0


async def test_refuses_a_receipt_without_a_token(
    client: httpx.AsyncClient, store: InMemoryEventStore
) -> None:
    response = await client.post("/v1/skus/sku-1/receipts", json={"quantity": 5})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert await store.last_position() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": 0},
        {"quantity": -3},
        {"quantity": 10_000_001},
        {"quantity": 1, "note": "n" * 201},
        {},
    ],
    ids=["zero", "negative", "above-maximum", "note-too-long", "no-quantity"],
)
async def test_rejects_an_invalid_receipt_with_a_422_problem(
    client: httpx.AsyncClient, store: InMemoryEventStore, body: dict[str, object]
) -> None:
    response = await client.post("/v1/skus/sku-1/receipts", json=body, headers=ADMIN)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert await store.last_position() == 0


@pytest.mark.parametrize("sku_id", ["red%20shirt", "x" * 65, "caf%C3%A9"])
async def test_rejects_a_sku_id_outside_printable_ascii_or_too_long_with_a_422_problem(
    client: httpx.AsyncClient, store: InMemoryEventStore, sku_id: str
) -> None:
    response = await client.post(f"/v1/skus/{sku_id}/receipts", json={"quantity": 1}, headers=ADMIN)

    assert response.status_code == 422
    assert await store.last_position() == 0


async def test_answers_a_sku_never_received_with_a_404_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/skus/sku-unknown", headers=ADMIN)

    assert response.status_code == 404
    assert response.json()["detail"] == "SKU sku-unknown not found"


async def test_hides_one_merchants_stock_from_another_merchant(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/skus/sku-1/receipts", json={"quantity": 5}, headers=ADMIN)

    response = await client.get(
        "/v1/skus/sku-1", headers=auth(Role.MERCHANT_ADMIN, merchant_id="merchant-2")
    )

    assert response.status_code == 404


async def test_refuses_to_show_stock_to_a_viewer(client: httpx.AsyncClient) -> None:
    await client.post("/v1/skus/sku-1/receipts", json={"quantity": 5}, headers=ADMIN)

    response = await client.get("/v1/skus/sku-1", headers=auth(Role.VIEWER))

    assert response.status_code == 403
