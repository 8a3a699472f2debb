"""The audit trail: every event records who asked for it (the verified caller's subject),
for admin, host, staff and buyer actions alike, through HTTP and gRPC. Each service runs in
process on a database of its own; the events table is read back directly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
from fastapi import FastAPI

from services.inventory.entrypoints.http import create_http_app as inventory_app
from services.inventory.settings import InventorySettings
from services.kit.identity import Role
from services.kit.settings import Environment
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints, unique
from services.order.settings import OrderSettings
from services.promotion.entrypoints.http import create_http_app as promotion_app
from services.promotion.settings import PromotionSettings
from services.referral.entrypoints.http import create_http_app as referral_app
from services.referral.settings import ReferralSettings
from tests.e2e.checkout_world import Shop
from tests.security.conftest import order_client
from tests.security.world import bearer, serving, token_for


def now_plus_iso(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def actors(dsn: str) -> dict[str, set[str]]:
    """Event type (short name) -> the actors recorded for it."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_type, actor FROM events")
    finally:
        await conn.close()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["event_type"].rsplit(".", 1)[-1], set()).add(row["actor"])
    return found


def in_process(
    stack: StackEndpoints, prefix: str, build: Callable[[str], FastAPI]
) -> Callable[[], AbstractAsyncContextManager[tuple[httpx.AsyncClient, str]]]:
    @asynccontextmanager
    async def run() -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
        async with scratch_database(stack, prefix) as dsn, serving(build(dsn), "http://app") as c:
            yield c, dsn

    return run


def common(stack: StackEndpoints, dsn: str) -> dict[str, Any]:
    return {
        "environment": Environment.TEST,
        "postgres_dsn": dsn,
        "redis_url": stack.redis_url,
        "kafka_bootstrap": stack.kafka_bootstrap,
    }


async def test_stock_and_sale_events_record_the_merchant_staff_who_asked(
    stack: StackEndpoints,
) -> None:
    merchant = unique("m")
    admin, operator = f"admin-{uuid4().hex[:6]}", f"op-{uuid4().hex[:6]}"
    run = in_process(
        stack, "inventory_audit", lambda dsn: inventory_app(InventorySettings(**common(stack, dsn)))
    )
    async with run() as (client, dsn):
        received = await client.post(
            "/v1/skus/SKU-1/receipts",
            json={"quantity": 5},
            headers=bearer(token_for(Role.MERCHANT_ADMIN, merchant, admin)),
        )
        sale = await client.post(
            "/v1/sales",
            json={
                "sale_id": "drop-1",
                "sku_id": "SKU-1",
                "quantity": 2,
                "starts_at": now_plus_iso(-1),
                "ends_at": now_plus_iso(60),
                "per_user_limit": 1,
            },
            headers=bearer(token_for(Role.OPERATOR, merchant, operator)),
        )
        found = await actors(dsn)

    assert (received.status_code, sale.status_code) == (201, 201), sale.text
    assert found["StockReceived"] == {admin}
    assert found["FlashSaleScheduled"] == {operator}


async def test_campaign_events_record_the_admin_who_created_and_the_host_who_started(
    stack: StackEndpoints, http: httpx.AsyncClient
) -> None:
    shop = await Shop.open(http)  # the merchant's stock lives in the running inventory
    admin, host = f"admin-{uuid4().hex[:6]}", f"host-{uuid4().hex[:6]}"
    run = in_process(
        stack, "promotion_audit", lambda dsn: promotion_app(PromotionSettings(**common(stack, dsn)))
    )
    async with run() as (client, dsn):
        created = await client.post(
            "/v1/campaigns",
            json={
                "campaign_id": "camp-1",
                "sku_id": shop.sku_id,
                "room_id": shop.room_id,
                "quantity": 1,
                "starts_at": now_plus_iso(30),
                "ends_at": now_plus_iso(90),
                "per_user_limit": 1,
            },
            headers=bearer(token_for(Role.MERCHANT_ADMIN, shop.merchant_id, admin)),
        )
        started = await client.post(
            "/v1/campaigns/camp-1/start",
            headers=bearer(token_for(Role.HOST, shop.merchant_id, host)),
        )
        found = await actors(dsn)

    assert (created.status_code, started.status_code) == (201, 200), started.text
    assert found["CampaignScheduled"] == {admin}
    assert found["CampaignStarted"] == {host}


async def test_the_programme_records_the_merchant_admin_who_configured_it(
    stack: StackEndpoints,
) -> None:
    merchant, admin = unique("m"), f"admin-{uuid4().hex[:6]}"
    run = in_process(
        stack, "referral_audit", lambda dsn: referral_app(ReferralSettings(**common(stack, dsn)))
    )
    async with run() as (client, dsn):
        configured = await client.put(
            "/v1/programme",
            json={"default_rate_bps": 500},
            headers=bearer(token_for(Role.MERCHANT_ADMIN, merchant, admin)),
        )
        found = await actors(dsn)

    assert configured.status_code == 200, configured.text
    assert found["ProgrammeConfigured"] == {admin}


async def test_an_orders_history_names_the_buyer_and_the_staff_behind_each_step(
    http: httpx.AsyncClient, order_settings: OrderSettings
) -> None:
    shop = await Shop.open(http)
    buyer = shop.buyer()
    staff = f"staff-{uuid4().hex[:6]}"
    staff_auth = bearer(token_for(Role.OPERATOR, shop.merchant_id, staff))
    async with order_client(order_settings) as order:
        placed = await order.post(
            "/v1/orders",
            json=buyer.order_body(),
            headers={**buyer.auth, "Idempotency-Key": uuid4().hex},
        )
        order_id = placed.json()["order_id"]
        cancelled = await order.post(f"/v1/orders/{order_id}/cancel", headers=buyer.auth)
        history = await order.get(f"/v1/orders/{order_id}/events", headers=staff_auth)

    assert cancelled.status_code == 200, cancelled.text
    assert [(e["type"], e["actor"]) for e in history.json()] == [
        ("OrderPlaced", buyer.buyer_id),
        ("OrderCancelled", buyer.buyer_id),
    ]
