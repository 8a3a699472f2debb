"""Payment notifications (webhooks) end to end, through the order API in process on its real
dependencies: a forged or stale notification is refused (401 problem+json) and changes
nothing; a genuine one is applied once, and the same notification id again, inside the
signed-timestamp window, is a no-op ("replayed"); a notification that fails is not
remembered, so the provider's retry is applied."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import pytest_asyncio

from services.order.sandbox.settings import DEVELOPMENT_SANDBOX_SIGNING_SECRET
from services.order.sandbox.signing import signed_headers
from services.order.settings import OrderSettings
from tests.e2e.checkout_world import Shop
from tests.security.conftest import order_client
from tests.security.world import assert_problem

NOTIFY = "/v1/payments/sandbox/notifications"


@dataclass
class Unpaid:
    order: httpx.AsyncClient
    buyer_auth: dict[str, str]
    order_id: str
    payment_id: str
    amount_minor: int

    def notification(self, **changes: Any) -> bytes:
        fields: dict[str, Any] = {
            "amount_minor": self.amount_minor,
            "currency": "CNY",
            "notification_id": str(uuid4()),
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "order_id": self.order_id,
            "payment_id": self.payment_id,
            "provider_transaction_id": f"sbxtx_{uuid4().hex[:12]}",
            "status": "succeeded",
            **changes,
        }
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()

    async def post(
        self,
        body: bytes,
        *,
        secret: str = DEVELOPMENT_SANDBOX_SIGNING_SECRET,
        signed_at: int | None = None,
    ) -> httpx.Response:
        headers = signed_headers(secret, signed_at or int(time.time()), body)
        headers["content-type"] = "application/json"
        return await self.order.post(NOTIFY, content=body, headers=headers)

    async def history(self) -> list[str]:
        return [entry["type"] for entry in await self.entries()]

    async def entries(self) -> list[dict[str, Any]]:
        answer = await self.order.get(f"/v1/orders/{self.order_id}/events", headers=self.buyer_auth)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found


@pytest_asyncio.fixture
async def unpaid(http: httpx.AsyncClient, order_settings: OrderSettings) -> AsyncIterator[Unpaid]:
    """An order placed and its payment opened with the running sandbox gateway."""
    shop = await Shop.open(http)
    buyer = shop.buyer()
    async with order_client(order_settings) as order:
        placed = await order.post(
            "/v1/orders",
            json=buyer.order_body(),
            headers={**buyer.auth, "Idempotency-Key": uuid4().hex},
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        payable = await order.post(f"/v1/orders/{order_id}/payments", headers=buyer.auth)
        assert payable.status_code == 200, payable.text
        yield Unpaid(
            order,
            buyer.auth,
            order_id,
            payable.json()["payment_id"],
            payable.json()["amount_minor"],
        )


async def test_a_forged_notification_is_refused_and_changes_nothing(unpaid: Unpaid) -> None:
    body = unpaid.notification()

    forged = await unpaid.post(body, secret="not-the-providers-secret")
    genuine = await unpaid.post(body)

    assert_problem(forged, 401)
    assert genuine.json() == {"outcome": "paid"}, "a forgery must not use up the id"
    assert (await unpaid.history()).count("OrderPaid") == 1


async def test_a_tampered_notification_is_refused(unpaid: Unpaid) -> None:
    body = unpaid.notification()
    headers = signed_headers(DEVELOPMENT_SANDBOX_SIGNING_SECRET, int(time.time()), body)
    tampered = body.replace(b'"status":"succeeded"', b'"status":"succeeded" ')

    answer = await unpaid.order.post(NOTIFY, content=tampered, headers=headers)

    assert_problem(answer, 401)
    assert "OrderPaid" not in await unpaid.history()


async def test_a_stale_notification_is_refused_and_changes_nothing(unpaid: Unpaid) -> None:
    stale = await unpaid.post(unpaid.notification(), signed_at=int(time.time()) - 3600)
    from_the_future = await unpaid.post(unpaid.notification(), signed_at=int(time.time()) + 3600)

    assert_problem(stale, 401)
    assert_problem(from_the_future, 401)
    assert "OrderPaid" not in await unpaid.history()


async def test_a_replayed_notification_inside_the_window_is_a_no_op(unpaid: Unpaid) -> None:
    body = unpaid.notification()
    signed_at = int(time.time())

    first = await unpaid.post(body, signed_at=signed_at)
    replays = [await unpaid.post(body, signed_at=signed_at) for _ in range(3)]
    resigned = await unpaid.post(body)

    assert first.json() == {"outcome": "paid"}
    assert [r.status_code for r in replays] == [200, 200, 200]
    assert {r.json()["outcome"] for r in [*replays, resigned]} == {"replayed"}
    paid = [e for e in await unpaid.entries() if e["type"] == "OrderPaid"]
    assert [e["actor"] for e in paid] == ["provider:sandbox"]


async def test_a_notification_that_fails_is_applied_when_the_provider_retries(
    unpaid: Unpaid,
) -> None:
    unknown = unpaid.notification(order_id="o-nobody-placed")

    first = await unpaid.post(unknown)
    retry = await unpaid.post(unknown)

    assert_problem(first, 404)
    assert_problem(retry, 404)  # tried again, not answered "replayed"
