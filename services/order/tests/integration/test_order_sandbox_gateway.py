"""The sandbox gateway for real: the app served by uvicorn on a free port over a real
Postgres schema, the order service's adapter talking to it over HTTP, and a real receiver
endpoint recording the notifications the gateway posts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
    UnavailableError,
)
from services.kit.settings import Environment
from services.kit.testing import TestDatabase
from services.order.adapters.sandbox_payments import SandboxPaymentProvider
from services.order.application.payments import (
    CreatedPayment,
    PaymentNotification,
    PaymentRequest,
    PaymentStatus,
)
from services.order.sandbox.app import create_sandbox_app
from services.order.sandbox.settings import SandboxSettings
from services.order.sandbox.testing import (
    MovableClock,
    NotificationReceiver,
    ReceivedNotification,
    base_url_of,
    bind_free_port,
    serving,
)

API_KEY = "integration-api-key"
SECRET = "integration-signing-secret"
PROBLEM_JSON = "application/problem+json"
QUIET = 0.3
"""Seconds to wait to see that nothing more arrives."""


@dataclass
class Gateway:
    url: str
    http: httpx.AsyncClient
    """Authenticated with the merchant API key."""
    provider: SandboxPaymentProvider
    receiver: NotificationReceiver
    notify_url: str
    clock: MovableClock
    pool: asyncpg.Pool
    """The test's own pool on the gateway's schema, to look behind the API."""

    def request(self, **changes: Any) -> PaymentRequest:
        fields: dict[str, Any] = {
            "payment_id": f"pay-{uuid4().hex[:12]}",
            "order_id": f"order-{uuid4().hex[:12]}",
            "merchant_id": "brand-1",
            "amount_minor": 10_000,
            "currency": "CNY",
            "description": "lipstick",
            "expires_at": self.clock() + timedelta(minutes=15),
            "notify_url": self.notify_url,
            **changes,
        }
        return PaymentRequest(**fields)

    async def pay(self, created: CreatedPayment, **choice: Any) -> httpx.Response:
        """The buyer's tap: no body at all unless the test turns a knob."""
        async with httpx.AsyncClient() as buyer:
            return await buyer.post(created.pay_url, json=choice or None)

    async def paid_payment(self) -> str:
        """A payment of 10 000 minor units, created and paid; its id."""
        request = self.request()
        tapped = await self.pay(await self.provider.create_payment(request))
        assert tapped.status_code == 200
        return request.payment_id

    def verify(self, received: ReceivedNotification) -> PaymentNotification:
        return self.provider.verify_notification(received.headers, received.body, self.clock())

    async def deliveries(self, payment_id: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT notification_id, attempts, delivered_at, gave_up_at, last_status"
            " FROM notification_deliveries WHERE payment_id = $1 ORDER BY delivery_id",
            payment_id,
        )
        return rows


GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
async def make_gateway(database: TestDatabase) -> AsyncIterator[GatewayFactory]:
    """``async with make_gateway(**settings) as gateway``: a gateway on the test's schema
    (call it again for a restarted gateway on the same tables; the receiver and the clock
    outlive it)."""
    receiver = NotificationReceiver()
    clock = MovableClock()

    @asynccontextmanager
    async def build(**settings: Any) -> AsyncIterator[Gateway]:
        sock = bind_free_port()
        config = SandboxSettings(
            environment=Environment.TEST,
            postgres_dsn=database.dsn,
            postgres_schema=database.schema,
            public_url=base_url_of(sock),
            api_key=API_KEY,
            signing_secret=SECRET,
            notify_poll_interval_seconds=0.05,
            notify_backoff_initial_seconds=0.05,
            notify_backoff_max_seconds=0.2,
            **settings,
        )
        async with (
            serving(create_sandbox_app(config, clock=clock), sock) as url,
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
            SandboxPaymentProvider(
                base_url=url, api_key=API_KEY, signing_secret=SECRET
            ) as provider,
        ):
            yield Gateway(url, http, provider, receiver, notify_url, clock, database.pool)

    async with serving(receiver.app()) as receiver_url:
        notify_url = f"{receiver_url}/notify"
        yield build


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> AsyncIterator[Gateway]:
    async with make_gateway() as made:
        yield made


async def test_a_paid_payment_is_notified_once_signed_and_verifiable_by_the_adapter(
    gateway: Gateway,
) -> None:
    request = gateway.request()
    created = await gateway.provider.create_payment(request)
    assert created.provider == "sandbox"
    assert created.pay_url == f"{gateway.url}/pay/{created.provider_reference}"

    tapped = await gateway.pay(created)
    assert tapped.status_code == 200
    (received,) = await gateway.receiver.wait_for(1)
    notification = gateway.verify(received)
    query = await gateway.provider.query(request.payment_id)

    assert notification.notification_id == tapped.json()["notification_id"]
    assert notification.payment_id == request.payment_id
    assert notification.order_id == request.order_id
    assert notification.status is PaymentStatus.SUCCEEDED
    assert (notification.amount_minor, notification.currency) == (10_000, "CNY")
    assert notification.provider_transaction_id == query.provider_transaction_id != ""
    assert query.status is PaymentStatus.SUCCEEDED
    assert query.paid_at == notification.occurred_at
    await asyncio.sleep(QUIET)
    assert len(gateway.receiver.received) == 1
    (delivery,) = await gateway.deliveries(request.payment_id)
    assert delivery["attempts"] == 1
    assert delivery["last_status"] == 204
    assert delivery["delivered_at"] is not None


async def test_a_new_payment_is_pending_until_tapped(gateway: Gateway) -> None:
    request = gateway.request()
    await gateway.provider.create_payment(request)

    query = await gateway.provider.query(request.payment_id)

    assert query.status is PaymentStatus.PENDING
    assert (query.amount_minor, query.currency) == (10_000, "CNY")
    assert query.provider_transaction_id == ""
    assert query.paid_at is None


async def test_duplicates_deliver_the_same_notification_that_many_times(
    gateway: Gateway,
) -> None:
    created = await gateway.provider.create_payment(gateway.request())

    await gateway.pay(created, duplicates=3)
    received = await gateway.receiver.wait_for(3)

    notifications = [gateway.verify(copy) for copy in received]
    assert len({n.notification_id for n in notifications}) == 1
    assert len({copy.body for copy in received}) == 1
    assert all(n.status is PaymentStatus.SUCCEEDED for n in notifications)
    await asyncio.sleep(QUIET)
    assert len(gateway.receiver.received) == 3


async def test_out_of_order_delivers_a_stale_failure_after_the_success(gateway: Gateway) -> None:
    created = await gateway.provider.create_payment(gateway.request())

    await gateway.pay(created, out_of_order=True)
    success, stale = (gateway.verify(r) for r in await gateway.receiver.wait_for(2))

    assert success.status is PaymentStatus.SUCCEEDED
    assert stale.status is PaymentStatus.FAILED
    assert stale.notification_id != success.notification_id
    assert stale.occurred_at < success.occurred_at
    assert stale.provider_transaction_id == ""


async def test_out_of_order_may_send_a_stale_pending_instead(gateway: Gateway) -> None:
    created = await gateway.provider.create_payment(gateway.request())

    await gateway.pay(created, out_of_order=True, stale_status="pending")
    statuses = [gateway.verify(r).status for r in await gateway.receiver.wait_for(2)]

    assert statuses == [PaymentStatus.SUCCEEDED, PaymentStatus.PENDING]


async def test_a_delayed_notification_arrives_only_after_its_delay(gateway: Gateway) -> None:
    created = await gateway.provider.create_payment(gateway.request())

    await gateway.pay(created, delay_ms=600)
    await asyncio.sleep(0.2)
    assert gateway.receiver.received == []

    (received,) = await gateway.receiver.wait_for(1)
    assert gateway.verify(received).status is PaymentStatus.SUCCEEDED


async def test_a_failed_tap_is_notified_and_a_later_tap_may_still_succeed(
    gateway: Gateway,
) -> None:
    request = gateway.request()
    created = await gateway.provider.create_payment(request)

    failed = await gateway.pay(created, outcome="fail")
    assert failed.json()["status"] == "failed"
    assert (await gateway.provider.query(request.payment_id)).status is PaymentStatus.FAILED
    await gateway.pay(created)
    first, second = (gateway.verify(r) for r in await gateway.receiver.wait_for(2))

    assert first.status is PaymentStatus.FAILED
    assert second.status is PaymentStatus.SUCCEEDED
    assert (await gateway.provider.query(request.payment_id)).status is PaymentStatus.SUCCEEDED


async def test_an_expired_payment_is_closed_and_refuses_a_tap(gateway: Gateway) -> None:
    request = gateway.request()
    created = await gateway.provider.create_payment(request)

    gateway.clock.advance(timedelta(minutes=15))
    query = await gateway.provider.query(request.payment_id)
    tapped = await gateway.pay(created)

    assert query.status is PaymentStatus.CLOSED
    assert tapped.status_code == 409
    assert tapped.headers["content-type"] == PROBLEM_JSON
    assert "closed" in tapped.json()["detail"]
    await asyncio.sleep(QUIET)
    assert gateway.receiver.received == []


async def test_a_paid_payment_refuses_a_second_tap(gateway: Gateway) -> None:
    created = await gateway.provider.create_payment(gateway.request())
    await gateway.pay(created)

    again = await gateway.pay(created)

    assert again.status_code == 409
    assert "already paid" in again.json()["detail"]


async def test_a_paid_payment_stays_paid_after_its_expiry(gateway: Gateway) -> None:
    payment_id = await gateway.paid_payment()

    gateway.clock.advance(timedelta(hours=1))

    assert (await gateway.provider.query(payment_id)).status is PaymentStatus.SUCCEEDED


async def test_creating_the_same_payment_again_answers_the_same_payment(
    gateway: Gateway,
) -> None:
    request = gateway.request()

    first = await gateway.provider.create_payment(request)
    second = await gateway.provider.create_payment(request)

    assert second == first


async def test_creating_answers_201_then_200_for_the_same_request(gateway: Gateway) -> None:
    body = {
        "payment_id": f"pay-{uuid4().hex[:12]}",
        "order_id": "order-1",
        "amount_minor": 500,
        "currency": "CNY",
        "expires_at": (gateway.clock() + timedelta(minutes=5)).isoformat(),
        "notify_url": gateway.notify_url,
    }

    first = await gateway.http.post("/v1/payments", json=body)
    second = await gateway.http.post("/v1/payments", json=body)

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert first.json()["status"] == "pending"


async def test_another_request_under_a_used_payment_id_is_a_conflict(gateway: Gateway) -> None:
    request = gateway.request()
    await gateway.provider.create_payment(request)

    with pytest.raises(AlreadyExistsError):
        await gateway.provider.create_payment(
            gateway.request(payment_id=request.payment_id, amount_minor=10_001)
        )


async def test_partial_refunds_add_up_to_the_paid_amount_and_no_more(gateway: Gateway) -> None:
    payment_id = await gateway.paid_payment()

    first = await gateway.provider.refund(payment_id, f"{payment_id}r1", 3_000, "one broken")
    second = await gateway.provider.refund(payment_id, f"{payment_id}r2", 7_000, "the rest")
    with pytest.raises(PreconditionFailedError, match="exceeds"):
        await gateway.provider.refund(payment_id, f"{payment_id}r3", 1, "one more")

    assert first.succeeded
    assert second.succeeded
    assert (first.amount_minor, second.amount_minor) == (3_000, 7_000)
    assert first.provider_refund_id != second.provider_refund_id
    shown = await gateway.http.get(f"/v1/payments/{payment_id}")
    assert shown.json()["refunded_minor"] == 10_000


async def test_a_refund_above_the_paid_amount_is_refused_whole(gateway: Gateway) -> None:
    payment_id = await gateway.paid_payment()

    with pytest.raises(PreconditionFailedError):
        await gateway.provider.refund(payment_id, "refund-too-much", 10_001, "oops")

    shown = await gateway.http.get(f"/v1/payments/{payment_id}")
    assert shown.json()["refunded_minor"] == 0
    assert (await gateway.http.get("/v1/refunds/refund-too-much")).status_code == 404


async def test_refunding_an_unpaid_payment_is_refused(gateway: Gateway) -> None:
    request = gateway.request()
    await gateway.provider.create_payment(request)

    with pytest.raises(PreconditionFailedError, match="not paid"):
        await gateway.provider.refund(request.payment_id, f"{request.payment_id}r", 1, "why")


async def test_refunding_an_unknown_payment_is_not_found(gateway: Gateway) -> None:
    with pytest.raises(NotFoundError):
        await gateway.provider.refund("no-such-payment", "refund-1", 1, "why")


async def test_a_refund_repeated_with_its_id_is_made_once(gateway: Gateway) -> None:
    payment_id = await gateway.paid_payment()

    first = await gateway.provider.refund(payment_id, f"{payment_id}r", 10_000, "cancelled")
    again = await gateway.provider.refund(payment_id, f"{payment_id}r", 10_000, "cancelled")

    assert again == first
    shown = await gateway.http.get(f"/v1/refunds/{payment_id}r")
    assert shown.status_code == 200
    assert shown.json()["provider_refund_id"] == first.provider_refund_id
    assert shown.json()["status"] == "succeeded"
    assert (await gateway.http.get(f"/v1/payments/{payment_id}")).json()["refunded_minor"] == (
        10_000
    )


async def test_another_refund_under_a_used_refund_id_is_a_conflict(gateway: Gateway) -> None:
    payment_id = await gateway.paid_payment()
    await gateway.provider.refund(payment_id, f"{payment_id}r", 1_000, "damaged")

    with pytest.raises(AlreadyExistsError):
        await gateway.provider.refund(payment_id, f"{payment_id}r", 2_000, "damaged")


async def test_querying_an_unknown_payment_is_not_found(gateway: Gateway) -> None:
    with pytest.raises(NotFoundError):
        await gateway.provider.query("no-such-payment")


async def test_the_merchant_api_refuses_a_missing_or_wrong_api_key(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        missing = await anonymous.get("/v1/payments/any")
        wrong = await anonymous.get(
            "/v1/payments/any", headers={"Authorization": "Bearer not-the-key"}
        )

    for answer in (missing, wrong):
        assert answer.status_code == 401
        assert answer.headers["content-type"] == PROBLEM_JSON


async def test_the_adapter_reports_a_refused_api_key_as_unavailable(gateway: Gateway) -> None:
    async with SandboxPaymentProvider(
        base_url=gateway.url, api_key="not-the-key", signing_secret=SECRET
    ) as misconfigured:
        with pytest.raises(UnavailableError):
            await misconfigured.query("any")


async def test_the_adapter_reports_an_unreachable_gateway_as_unavailable() -> None:
    sock = bind_free_port()
    url = base_url_of(sock)
    sock.close()
    async with SandboxPaymentProvider(
        base_url=url, api_key=API_KEY, signing_secret=SECRET, attempts=2
    ) as provider:
        with pytest.raises(UnavailableError):
            await provider.query("any")


async def test_a_bad_payment_request_is_refused_with_problem_json(gateway: Gateway) -> None:
    answer = await gateway.http.post(
        "/v1/payments",
        json={
            "payment_id": "pay-1",
            "order_id": "order-1",
            "amount_minor": 0,
            "currency": "cny",
            "expires_at": "2030-01-01T00:00:00",
            "notify_url": "not a url",
        },
    )

    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    refused = {error["loc"][-1] for error in answer.json()["errors"]}
    assert refused == {"amount_minor", "currency", "expires_at", "notify_url"}


async def test_a_payment_expiring_in_the_past_is_refused(gateway: Gateway) -> None:
    with pytest.raises(InvalidArgumentError, match="expires_at"):
        await gateway.provider.create_payment(
            gateway.request(expires_at=gateway.clock() - timedelta(seconds=1))
        )


async def test_a_receiver_answering_errors_gets_the_same_notification_until_it_answers_2xx(
    gateway: Gateway,
) -> None:
    gateway.receiver.answers.extend([500, 503])
    payment_id = await gateway.paid_payment()

    received = await gateway.receiver.wait_for(3)

    assert len({copy.body for copy in received}) == 1
    assert all(gateway.verify(copy).status is PaymentStatus.SUCCEEDED for copy in received)
    await asyncio.sleep(QUIET)
    assert len(gateway.receiver.received) == 3
    (delivery,) = await gateway.deliveries(payment_id)
    assert (delivery["attempts"], delivery["last_status"]) == (3, 204)


async def test_the_gateway_gives_up_after_its_attempts(make_gateway: GatewayFactory) -> None:
    async with make_gateway(notify_max_attempts=2) as gateway:
        gateway.receiver.answers.extend([500] * 10)
        payment_id = await gateway.paid_payment()

        await gateway.receiver.wait_for(2)
        await asyncio.sleep(QUIET)

        assert len(gateway.receiver.received) == 2
        (delivery,) = await gateway.deliveries(payment_id)
        assert delivery["attempts"] == 2
        assert delivery["gave_up_at"] is not None
        assert delivery["delivered_at"] is None


async def test_a_notification_queued_before_a_restart_is_delivered_after_it(
    make_gateway: GatewayFactory,
) -> None:
    async with make_gateway() as before:
        request = before.request()
        await before.pay(await before.provider.create_payment(request), delay_ms=500)
    assert before.receiver.received == []

    async with make_gateway() as after:
        (received,) = await after.receiver.wait_for(1)
        assert after.verify(received).payment_id == request.payment_id


async def test_the_hosted_pay_page_shows_the_payment(gateway: Gateway) -> None:
    request = gateway.request(order_id="order-<b>")
    created = await gateway.provider.create_payment(request)

    async with httpx.AsyncClient() as buyer:
        page = await buyer.get(created.pay_url)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "order-&lt;b&gt;" in page.text
    assert "pending" in page.text


async def test_the_gateway_is_ready_when_its_database_is(gateway: Gateway) -> None:
    ready = await gateway.http.get("/readyz")

    assert ready.status_code == 200
    assert ready.json()["checks"] == ["postgres"]
