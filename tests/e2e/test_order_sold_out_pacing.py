"""The order API's "sold out" refusals answered from its memory: each is the 409 problem it
always was, and a busy API lets them leave together rather than one by one (the order
API in process on a database of its own, on the stack's Postgres and Redis)."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx

from services.kit.identity import Role
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints, unique
from services.order.entrypoints.http import create_http_app
from tests.security.world import (
    assert_problem,
    bearer,
    order_settings_on,
    serving,
    token_for,
)

PACE = 0.1
"""The API's sold-out refusals leave together at most this often (seconds)."""


async def test_sold_out_refusals_of_a_busy_order_api_leave_together_each_a_409_problem(
    stack: StackEndpoints,
) -> None:
    merchant, room, sku = unique("merchant"), unique("room"), "SKU-GONE"
    async with scratch_database(stack, "order_pacing") as dsn:
        app = create_http_app(order_settings_on(stack, dsn, sold_out_reply_interval_ms=PACE * 1000))
        async with serving(app, "http://order") as client:
            app.state.order.orders.sold_out.remember(merchant, room, sku)

            async def checkout() -> httpx.Response:
                return await client.post(
                    "/v1/orders",
                    json={
                        "merchant_id": merchant,
                        "room_id": room,
                        "channel": "app",
                        "lines": [{"sku_id": sku, "quantity": 1}],
                    },
                    headers={
                        **bearer(token_for(Role.VIEWER, merchant)),
                        "Idempotency-Key": uuid4().hex,
                    },
                )

            first = await checkout()  # an idle API answers at once
            loop = asyncio.get_running_loop()
            burst_sent = loop.time()
            burst = await asyncio.gather(*(checkout() for _ in range(5)))
            waited = loop.time() - burst_sent

    for response in (first, *burst):
        assert sku in assert_problem(response, 409)["detail"]
    assert waited >= PACE / 2  # held for the next group, not refused one by one
