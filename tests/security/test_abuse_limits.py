"""Abuse limits on the buy path, end to end: the order API in process on its real
dependencies (Postgres, Redis, inventory and promotion over gRPC), on a flash sale set up
through the running services. One user hammering "buy" is rate-limited (429 problem+json
with Retry-After) and holds at most the sale's per-user limit, however many keys and
retries it tries; other buyers still buy."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx

from services.kit.testing import unique
from services.order.settings import OrderSettings
from tests.e2e.checkout_world import Buyer, Shop
from tests.security.conftest import order_client
from tests.security.world import assert_problem

PER_USER_HOLDS = 2


async def place(order: httpx.AsyncClient, buyer: Buyer, key: str | None = None) -> httpx.Response:
    headers = {**buyer.auth, "Idempotency-Key": key or f"key-{uuid4().hex}"}
    return await order.post("/v1/orders", json=buyer.order_body(), headers=headers)


async def test_a_bot_hammering_buy_is_rate_limited_and_holds_at_most_its_limit_while_others_buy(
    http: httpx.AsyncClient, order_settings: OrderSettings
) -> None:
    shop = await Shop.open(http, allocated=20, per_user_limit=PER_USER_HOLDS)
    bot = shop.buyer()
    async with order_client(order_settings) as order:
        answers = await asyncio.gather(*(place(order, bot) for _ in range(40)))
        others = [shop.buyer() for _ in range(5)]
        bought = await asyncio.gather(*(place(order, buyer) for buyer in others))

    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == PER_USER_HOLDS, statuses
    limited = [a for a in answers if a.status_code == 429]
    assert len(limited) == 40 - 5, statuses  # 5 per 30 s pass the limiter
    for answer in limited:
        assert_problem(answer, 429)
        assert 1 <= int(answer.headers["Retry-After"]) <= 30
    refused = [a for a in answers if a.status_code not in (201, 429)]
    for answer in refused:  # past the limiter, but past the sale's per-user limit too
        assert_problem(answer, 409)
    assert [b.status_code for b in bought] == [201] * 5
    sale = await shop.sale()
    assert sale["held"] == PER_USER_HOLDS + 5


async def test_retrying_one_order_with_its_key_never_holds_more_stock(
    http: httpx.AsyncClient, order_settings: OrderSettings
) -> None:
    shop = await Shop.open(http, allocated=20, per_user_limit=PER_USER_HOLDS)
    buyer = shop.buyer()
    async with order_client(order_settings, buy_limit_per_user="100/10 seconds") as order:
        first = await place(order, buyer, key="the-one-key")
        retries = await asyncio.gather(*(place(order, buyer, key="the-one-key") for _ in range(8)))
        second = await place(order, buyer)
        third = await place(order, buyer)

    assert first.status_code == 201
    assert {r.json()["order_id"] for r in retries} == {first.json()["order_id"]}
    assert second.status_code == 201
    assert_problem(third, 409)
    assert (await shop.sale())["held"] == PER_USER_HOLDS


async def test_many_buyers_behind_one_address_are_limited_per_address(
    http: httpx.AsyncClient, order_settings: OrderSettings
) -> None:
    shop = await Shop.open(http, allocated=20, per_user_limit=PER_USER_HOLDS)
    # A service name of its own: the address (loopback) and its window are this test's alone.
    async with order_client(
        order_settings, buy_limit_per_address="3/30 seconds", service_name=unique("order")
    ) as order:
        answers = [await place(order, shop.buyer()) for _ in range(5)]

    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
    assert "address" in assert_problem(answers[3], 429)["detail"]
