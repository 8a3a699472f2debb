"""The sandbox adapter's calls against a scripted gateway (httpx's mock transport): the
requests it sends, the answers it reads, the errors it maps and the failures it retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
    UnavailableError,
)
from services.order.adapters.sandbox_payments import (
    SandboxPaymentProvider,
    SandboxRefusedError,
    SandboxUnavailableError,
)
from services.order.application.payments import PaymentRequest, PaymentStatus

EXPIRES = datetime(2025, 11, 22, 12, 15, tzinfo=UTC)


class ScriptedGateway:
    """Answers each request with the next scripted response and keeps the requests."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if answer.status_code == 599:
            raise httpx.ConnectError("refused", request=request)
        return answer


def problem(status: int, title: str, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"title": title, "status": status, "detail": detail})


REFUSED = httpx.Response(599)
"""Scripted as a refused connection."""


def provider_over(script: ScriptedGateway, attempts: int = 3) -> SandboxPaymentProvider:
    return SandboxPaymentProvider(
        base_url="http://sandbox.test",
        api_key="the-key",
        signing_secret="secret",
        attempts=attempts,
        transport=httpx.MockTransport(script),
    )


def request() -> PaymentRequest:
    return PaymentRequest(
        payment_id="o-1p1",
        order_id="o-1",
        merchant_id="brand-1",
        amount_minor=12_900,
        currency="CNY",
        description="order o-1",
        expires_at=EXPIRES,
        notify_url="http://order.test/v1/payments/sandbox/notifications",
    )


CREATED = httpx.Response(
    201,
    json={
        "payment_id": "o-1p1",
        "provider_reference": "sbxpay_ref",
        "pay_url": "http://sandbox.test/pay/sbxpay_ref",
        "status": "pending",
    },
)


def sent(script: ScriptedGateway, index: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(script.requests[index].content)
    return body


async def test_creates_a_payment_with_the_api_key_and_the_request_fields() -> None:
    script = ScriptedGateway(CREATED)
    async with provider_over(script) as provider:
        created = await provider.create_payment(request())

    assert created.provider == "sandbox"
    assert created.provider_reference == "sbxpay_ref"
    assert created.pay_url == "http://sandbox.test/pay/sbxpay_ref"
    (call,) = script.requests
    assert (call.method, call.url.path) == ("POST", "/v1/payments")
    assert call.headers["Authorization"] == "Bearer the-key"
    assert sent(script) == {
        "payment_id": "o-1p1",
        "order_id": "o-1",
        "amount_minor": 12_900,
        "currency": "CNY",
        "description": "order o-1",
        "expires_at": "2025-11-22T12:15:00+00:00",
        "notify_url": "http://order.test/v1/payments/sandbox/notifications",
    }


async def test_retries_a_refused_connection_and_a_5xx_then_succeeds() -> None:
    script = ScriptedGateway(REFUSED, problem(503, "Service unavailable", "db"), CREATED)
    async with provider_over(script) as provider:
        created = await provider.create_payment(request())

    assert created.provider_reference == "sbxpay_ref"
    assert len(script.requests) == 3
    assert sent(script, 0) == sent(script, 2)


async def test_reports_a_gateway_down_for_every_attempt_as_unavailable() -> None:
    script = ScriptedGateway(REFUSED, REFUSED)
    async with provider_over(script, attempts=2) as provider:
        with pytest.raises(SandboxUnavailableError):
            await provider.query("o-1p1")

    assert len(script.requests) == 2


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (problem(404, "Not found", "no payment"), NotFoundError),
        (problem(409, "Already exists", "taken"), AlreadyExistsError),
        (problem(409, "Precondition failed", "not paid"), PreconditionFailedError),
        (problem(422, "Invalid request", "bad"), InvalidArgumentError),
        (problem(401, "Unauthenticated", "wrong key"), SandboxRefusedError),
        (httpx.Response(400, text="not json"), SandboxRefusedError),
    ],
)
async def test_maps_a_refusal_to_a_kit_error_without_retrying(
    answer: httpx.Response, raised: type[Exception]
) -> None:
    script = ScriptedGateway(answer)
    async with provider_over(script) as provider:
        with pytest.raises(raised):
            await provider.refund("o-1p1", "o-1p1r", 100, "why")

    assert len(script.requests) == 1


def test_a_refused_api_key_is_unavailable_to_the_caller_not_unauthenticated() -> None:
    assert issubclass(SandboxRefusedError, UnavailableError)


async def test_reads_a_paid_query() -> None:
    script = ScriptedGateway(
        httpx.Response(
            200,
            json={
                "payment_id": "o-1p1",
                "status": "succeeded",
                "amount_minor": 12_900,
                "currency": "CNY",
                "provider_transaction_id": "sbxtx_1",
                "paid_at": "2025-11-22T12:01:00+00:00",
            },
        )
    )
    async with provider_over(script) as provider:
        found = await provider.query("o-1p1")

    assert found.status is PaymentStatus.SUCCEEDED
    assert found.provider_transaction_id == "sbxtx_1"
    assert found.paid_at == EXPIRES - timedelta(minutes=14)


async def test_reads_an_unpaid_query_as_an_empty_transaction_id() -> None:
    script = ScriptedGateway(
        httpx.Response(
            200,
            json={
                "payment_id": "o-1p1",
                "status": "closed",
                "amount_minor": 12_900,
                "currency": "CNY",
                "provider_transaction_id": None,
                "paid_at": None,
            },
        )
    )
    async with provider_over(script) as provider:
        found = await provider.query("o-1p1")

    assert found.status is PaymentStatus.CLOSED
    assert found.provider_transaction_id == ""
    assert found.paid_at is None


async def test_quotes_the_payment_id_into_the_query_path() -> None:
    script = ScriptedGateway(problem(404, "Not found", "no payment"))
    async with provider_over(script) as provider:
        with pytest.raises(NotFoundError):
            await provider.query("a/b?c")

    assert script.requests[0].url.raw_path == b"/v1/payments/a%2Fb%3Fc"


async def test_sends_a_refund_and_reads_its_receipt() -> None:
    script = ScriptedGateway(
        httpx.Response(
            201,
            json={
                "refund_id": "o-1p1r",
                "provider_refund_id": "sbxrf_1",
                "payment_id": "o-1p1",
                "amount_minor": 2_900,
                "reason": "one broken",
                "status": "succeeded",
                "created_at": "2025-11-22T12:05:00+00:00",
            },
        )
    )
    async with provider_over(script) as provider:
        receipt = await provider.refund("o-1p1", "o-1p1r", 2_900, "one broken")

    assert receipt.refund_id == "o-1p1r"
    assert receipt.provider_refund_id == "sbxrf_1"
    assert receipt.amount_minor == 2_900
    assert receipt.succeeded
    assert sent(script) == {
        "refund_id": "o-1p1r",
        "payment_id": "o-1p1",
        "amount_minor": 2_900,
        "reason": "one broken",
    }
