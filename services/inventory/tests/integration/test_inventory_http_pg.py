"""Inventory's HTTP API over a real Postgres: the app runs its own lifespan (pool and
migrations) against a database created for this module and dropped after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest_asyncio

from livecommerce.inventory.v1 import events_pb2
from services.inventory.adapters.stock_levels import project_stock_received
from services.inventory.entrypoints.http import create_http_app
from services.inventory.settings import InventorySettings
from services.kit.consumer import ConsumedEvent
from services.kit.eventstore import PostgresEventStore
from services.kit.identity import Role, TokenIssuer
from services.kit.settings import Environment
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints, unique

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Inventory:
    client: httpx.AsyncClient
    issuer: TokenIssuer
    pool: asyncpg.Pool
    """A pool of our own on the app's database, to look behind the API."""

    def auth(self, merchant_id: str | None, *roles: Role) -> dict[str, str]:
        token = self.issuer.mint("user-1", roles or (Role.MERCHANT_ADMIN,), merchant_id)
        return {"Authorization": f"Bearer {token}"}

    async def stream(self, merchant_id: str, sku_id: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT version, event_type, aggregate_type, merchant_id, correlation_id, payload"
            " FROM events WHERE stream_id = $1 ORDER BY version",
            f"sku:{merchant_id}:{sku_id}",
        )
        return rows

    async def events_of(self, merchant_id: str) -> int:
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM events WHERE merchant_id = $1", merchant_id
        )
        return count


@pytest_asyncio.fixture(scope="module")
async def inventory(stack: StackEndpoints) -> AsyncIterator[Inventory]:
    async with scratch_database(stack, "inventory_test") as dsn:
        settings = InventorySettings(
            environment=Environment.TEST,
            postgres_dsn=dsn,
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
        )
        app = create_http_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://inventory"
            ) as client,
        ):
            pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
            assert pool is not None
            try:
                yield Inventory(client, TokenIssuer(settings), pool)
            finally:
                await pool.close()


async def test_receipts_accumulate_on_the_sku_and_reading_it_replays_its_events(
    inventory: Inventory,
) -> None:
    merchant = unique("merchant")
    headers = inventory.auth(merchant, Role.OPERATOR)

    first = await inventory.client.post(
        "/v1/skus/TEE-RED-M/receipts",
        json={"quantity": 5, "note": "pallet 1"},
        headers={**headers, "x-request-id": "req-receipt-1"},
    )
    second = await inventory.client.post(
        "/v1/skus/TEE-RED-M/receipts", json={"quantity": 7}, headers=headers
    )
    read = await inventory.client.get("/v1/skus/TEE-RED-M", headers=headers)

    assert first.status_code == 201
    assert first.json() == {
        "sku_id": "TEE-RED-M",
        "merchant_id": merchant,
        "on_hand": 5,
        "version": 1,
    }
    assert first.headers["x-request-id"] == "req-receipt-1"
    assert second.status_code == 201
    assert second.json()["on_hand"] == 12
    assert read.status_code == 200
    assert read.json() == {
        "sku_id": "TEE-RED-M",
        "merchant_id": merchant,
        "on_hand": 12,
        "version": 2,
    }
    stored = await inventory.stream(merchant, "TEE-RED-M")
    assert [r["version"] for r in stored] == [1, 2]
    assert {r["event_type"] for r in stored} == {"livecommerce.inventory.v1.StockReceived"}
    assert {(r["aggregate_type"], r["merchant_id"]) for r in stored} == {("sku", merchant)}
    assert stored[0]["correlation_id"] == "req-receipt-1"  # the request id caused the event
    received = [events_pb2.StockReceived.FromString(r["payload"]) for r in stored]
    assert [(e.sku_id, e.quantity, e.on_hand_after, e.note) for e in received] == [
        ("TEE-RED-M", 5, 5, "pallet 1"),
        ("TEE-RED-M", 7, 12, ""),
    ]


async def test_concurrent_receipts_of_one_sku_all_count(inventory: Inventory) -> None:
    merchant = unique("merchant")
    headers = inventory.auth(merchant)
    quantities = [1, 2, 3, 4, 5]  # no more racers than receive_stock's conflict retries

    responses = await asyncio.gather(
        *(
            inventory.client.post("/v1/skus/MUG/receipts", json={"quantity": q}, headers=headers)
            for q in quantities
        )
    )

    assert [r.status_code for r in responses] == [201] * len(quantities)
    assert sorted(r.json()["version"] for r in responses) == [1, 2, 3, 4, 5]
    read = await inventory.client.get("/v1/skus/MUG", headers=headers)
    assert read.json()["on_hand"] == sum(quantities)
    assert read.json()["version"] == len(quantities)


async def test_a_sku_of_another_merchant_is_not_found(inventory: Inventory) -> None:
    owner, stranger = unique("merchant"), unique("merchant")
    await inventory.client.post(
        "/v1/skus/HAT/receipts", json={"quantity": 3}, headers=inventory.auth(owner)
    )

    theirs = await inventory.client.get("/v1/skus/HAT", headers=inventory.auth(stranger))
    unknown = await inventory.client.get("/v1/skus/NEVER-SEEN", headers=inventory.auth(owner))

    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == PROBLEM_JSON
    assert theirs.json()["status"] == 404
    assert unknown.status_code == 404
    assert await inventory.events_of(stranger) == 0


async def test_a_viewer_may_neither_receive_nor_read_stock(inventory: Inventory) -> None:
    merchant = unique("merchant")
    await inventory.client.post(
        "/v1/skus/SOCK/receipts", json={"quantity": 2}, headers=inventory.auth(merchant)
    )
    viewer = inventory.auth(merchant, Role.VIEWER)

    receive = await inventory.client.post(
        "/v1/skus/SOCK/receipts", json={"quantity": 2}, headers=viewer
    )
    read = await inventory.client.get("/v1/skus/SOCK", headers=viewer)

    assert receive.status_code == 403
    assert receive.headers["content-type"] == PROBLEM_JSON
    assert read.status_code == 403
    assert [r["version"] for r in await inventory.stream(merchant, "SOCK")] == [1]


async def test_a_caller_without_a_token_or_without_a_merchant_cannot_receive_stock(
    inventory: Inventory,
) -> None:
    anonymous = await inventory.client.post("/v1/skus/CAP/receipts", json={"quantity": 1})
    platform = await inventory.client.post(
        "/v1/skus/CAP/receipts", json={"quantity": 1}, headers=inventory.auth(None, Role.OPS)
    )

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert platform.status_code == 403  # OPS may read any merchant, not receive for none


async def test_a_receipt_of_zero_units_is_refused_as_problem_json_and_appends_nothing(
    inventory: Inventory,
) -> None:
    merchant = unique("merchant")

    response = await inventory.client.post(
        "/v1/skus/SCARF/receipts", json={"quantity": 0}, headers=inventory.auth(merchant)
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 422
    assert body["instance"] == "/v1/skus/SCARF/receipts"
    assert any(error["loc"] == ["body", "quantity"] for error in body["errors"])
    assert await inventory.events_of(merchant) == 0


async def test_a_malformed_sku_id_is_refused_and_appends_nothing(inventory: Inventory) -> None:
    merchant = unique("merchant")
    headers = inventory.auth(merchant)

    spaced = await inventory.client.post(
        "/v1/skus/two%20words/receipts", json={"quantity": 1}, headers=headers
    )
    too_long = await inventory.client.post(
        f"/v1/skus/{'X' * 65}/receipts", json={"quantity": 1}, headers=headers
    )
    read = await inventory.client.get("/v1/skus/two%20words", headers=headers)

    assert [spaced.status_code, too_long.status_code, read.status_code] == [422, 422, 422]
    assert spaced.headers["content-type"] == PROBLEM_JSON
    assert await inventory.events_of(merchant) == 0


async def test_the_service_is_ready_once_its_database_is_migrated(inventory: Inventory) -> None:
    response = await inventory.client.get("/readyz")
    migrations = await inventory.pool.fetch("SELECT name FROM schema_migrations ORDER BY name")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": ["postgres", "redis"]}
    assert [r["name"] for r in migrations] == [
        "services.inventory:001_stock_levels.sql",
        "services.inventory:002_flash_sales.sql",
        "services.kit:001_kit.sql",
        "services.kit:002_event_actor.sql",
    ]


async def test_the_stock_level_read_model_keeps_the_newest_version_in_any_arrival_order(
    inventory: Inventory,
) -> None:
    merchant = unique("merchant")
    headers = inventory.auth(merchant)
    for quantity in (4, 6):
        await inventory.client.post(
            "/v1/skus/BELT/receipts", json={"quantity": quantity}, headers=headers
        )
    before_projection = await inventory.client.get("/v1/stock-levels/BELT", headers=headers)
    stored = await PostgresEventStore(inventory.pool, "inventory").read_stream(
        f"sku:{merchant}:BELT"
    )
    deliveries = [stored[1], stored[0], stored[1]]  # newest first, then older, then again

    for event in deliveries:
        consumed = ConsumedEvent(event.to_envelope("inventory"), "inventory.events", 0, 0)
        async with inventory.pool.acquire() as conn, conn.transaction():
            await project_stock_received(consumed, conn)

    level = await inventory.client.get("/v1/stock-levels/BELT", headers=headers)
    listed = await inventory.client.get("/v1/stock-levels", headers=headers)
    elsewhere = await inventory.client.get(
        "/v1/stock-levels", headers=inventory.auth(unique("merchant"))
    )
    assert before_projection.status_code == 404
    expected = {"sku_id": "BELT", "merchant_id": merchant, "on_hand": 10, "version": 2}
    assert level.json() == expected
    assert listed.json() == [expected]
    assert elsewhere.json() == []
