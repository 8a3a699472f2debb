"""The sandbox adapter's notification check: signature, replay window and body, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from services.order.adapters.sandbox_payments import SandboxPaymentProvider
from services.order.application.payments import (
    InvalidNotificationSignatureError,
    MalformedNotificationError,
    PaymentStatus,
    StaleNotificationError,
)
from services.order.sandbox.signing import sign, signed_headers

SECRET = "a-shared-notification-secret"
NOW = datetime(2025, 11, 22, 12, 0, tzinfo=UTC)
SENT = int(NOW.timestamp())


def notification(**changes: Any) -> bytes:
    fields = {
        "notification_id": "6f1c7a52-3b8e-4a55-9a1e-0b6a7f1f4d10",
        "payment_id": "pay-1",
        "order_id": "order-1",
        "status": "succeeded",
        "amount_minor": 12_900,
        "currency": "CNY",
        "provider_transaction_id": "sbxtx_1",
        "occurred_at": "2025-11-22T11:59:58+00:00",
        **changes,
    }
    return json.dumps(fields, separators=(",", ":")).encode()


@pytest_asyncio.fixture
async def provider() -> AsyncIterator[SandboxPaymentProvider]:
    async with SandboxPaymentProvider(
        base_url="http://sandbox.invalid", api_key="key", signing_secret=SECRET
    ) as made:
        yield made


def test_signature_is_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'

    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()

    assert sign(SECRET, 1_700_000_000, body) == expected


def test_accepts_a_correctly_signed_fresh_notification(provider: SandboxPaymentProvider) -> None:
    body = notification()

    found = provider.verify_notification(signed_headers(SECRET, SENT, body), body, NOW)

    assert found.provider == "sandbox"
    assert found.payment_id == "pay-1"
    assert found.order_id == "order-1"
    assert found.status is PaymentStatus.SUCCEEDED
    assert found.amount_minor == 12_900
    assert found.currency == "CNY"
    assert found.provider_transaction_id == "sbxtx_1"
    assert found.occurred_at == datetime(2025, 11, 22, 11, 59, 58, tzinfo=UTC)


def test_reads_headers_in_any_letter_case(provider: SandboxPaymentProvider) -> None:
    body = notification()
    headers = {name.lower(): value for name, value in signed_headers(SECRET, SENT, body).items()}

    assert provider.verify_notification(headers, body, NOW).payment_id == "pay-1"


def test_accepts_a_failed_notification_without_transaction_id(
    provider: SandboxPaymentProvider,
) -> None:
    body = notification(status="failed", provider_transaction_id="")

    found = provider.verify_notification(signed_headers(SECRET, SENT, body), body, NOW)

    assert found.status is PaymentStatus.FAILED
    assert found.provider_transaction_id == ""


def test_refuses_a_notification_signed_with_another_secret(
    provider: SandboxPaymentProvider,
) -> None:
    body = notification()

    with pytest.raises(InvalidNotificationSignatureError):
        provider.verify_notification(signed_headers("forger", SENT, body), body, NOW)


def test_refuses_a_body_tampered_with_after_signing(provider: SandboxPaymentProvider) -> None:
    headers = signed_headers(SECRET, SENT, notification(amount_minor=1))

    with pytest.raises(InvalidNotificationSignatureError):
        provider.verify_notification(headers, notification(amount_minor=100_000), NOW)


def test_refuses_a_timestamp_changed_after_signing(provider: SandboxPaymentProvider) -> None:
    body = notification()
    headers = signed_headers(SECRET, SENT - 3600, body)
    headers["X-Sandbox-Timestamp"] = str(SENT)

    with pytest.raises(InvalidNotificationSignatureError):
        provider.verify_notification(headers, body, NOW)


@pytest.mark.parametrize("missing", ["X-Sandbox-Timestamp", "X-Sandbox-Signature"])
def test_refuses_a_notification_missing_a_signature_header(
    provider: SandboxPaymentProvider, missing: str
) -> None:
    body = notification()
    headers = signed_headers(SECRET, SENT, body)
    del headers[missing]

    with pytest.raises(InvalidNotificationSignatureError):
        provider.verify_notification(headers, body, NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        ("-1", "0" * 64),
        ("1e9", "0" * 64),
        ("١٧٠٠٠٠٠٠٠٠", "0" * 64),
        (str(SENT), "not-hex"),
        (str(SENT), "é" * 64),
        (str(SENT), "0" * 63),
    ],
)
def test_refuses_malformed_signature_headers(
    provider: SandboxPaymentProvider, timestamp: str, signature: str
) -> None:
    headers = {"X-Sandbox-Timestamp": timestamp, "X-Sandbox-Signature": signature}

    with pytest.raises(InvalidNotificationSignatureError):
        provider.verify_notification(headers, notification(), NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(seconds=301)])
def test_refuses_a_correctly_signed_notification_outside_the_clock_skew(
    provider: SandboxPaymentProvider, offset: timedelta
) -> None:
    body = notification()
    headers = signed_headers(SECRET, int((NOW + offset).timestamp()), body)

    with pytest.raises(StaleNotificationError):
        provider.verify_notification(headers, body, NOW)


def test_refuses_a_correctly_signed_timestamp_beyond_any_calendar(
    provider: SandboxPaymentProvider,
) -> None:
    body = notification()

    with pytest.raises(StaleNotificationError):
        provider.verify_notification(signed_headers(SECRET, 999_999_999_999, body), body, NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=-300), timedelta(seconds=300)])
def test_accepts_a_notification_at_the_edge_of_the_clock_skew(
    provider: SandboxPaymentProvider, offset: timedelta
) -> None:
    body = notification()
    headers = signed_headers(SECRET, int((NOW + offset).timestamp()), body)

    assert provider.verify_notification(headers, body, NOW).payment_id == "pay-1"


async def test_a_wider_clock_skew_accepts_an_older_notification() -> None:
    body = notification()
    headers = signed_headers(SECRET, SENT - 3_000, body)
    async with SandboxPaymentProvider(
        base_url="http://sandbox.invalid",
        api_key="key",
        signing_secret=SECRET,
        clock_skew=timedelta(hours=1),
    ) as lenient:
        assert lenient.verify_notification(headers, body, NOW).payment_id == "pay-1"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        notification(status="refunded"),
        notification(amount_minor=0),
        notification(amount_minor=True),
        notification(amount_minor="12900"),
        notification(payment_id=""),
        notification(order_id=7),
        notification(occurred_at="yesterday"),
        notification(occurred_at="2025-11-22T11:59:58"),
        json.dumps({"payment_id": "pay-1"}).encode(),
    ],
)
def test_refuses_a_correctly_signed_body_that_is_not_a_notification(
    provider: SandboxPaymentProvider, body: bytes
) -> None:
    with pytest.raises(MalformedNotificationError):
        provider.verify_notification(signed_headers(SECRET, SENT, body), body, NOW)
