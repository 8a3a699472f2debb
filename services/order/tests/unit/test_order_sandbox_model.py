"""The sandbox gateway's rules without a database: expiry, taps, refunds, idempotency
fingerprints, the notification body, the retry schedule and the settings guard."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from pydantic import SecretStr, ValidationError

from services.kit.settings import Environment, KafkaProfile
from services.order.sandbox.delivery import BackoffSchedule
from services.order.sandbox.model import (
    ExpiryNotInFutureError,
    Outcome,
    Payment,
    PaymentAlreadyPaidError,
    PaymentClosedError,
    PaymentNotPaidError,
    PaymentOrder,
    RefundExceedsPaymentError,
    RefundOrder,
    SandboxStatus,
    notification_body,
)
from services.order.sandbox.settings import (
    DEVELOPMENT_SANDBOX_API_KEY,
    DEVELOPMENT_SANDBOX_SIGNING_SECRET,
    SandboxSettings,
)

NOW = datetime(2025, 11, 22, 12, 0, tzinfo=UTC)


def order(**changes: object) -> PaymentOrder:
    fields: dict[str, object] = {
        "payment_id": "pay-1",
        "order_id": "order-1",
        "amount_minor": 10_000,
        "currency": "CNY",
        "description": "lipstick",
        "expires_at": NOW + timedelta(minutes=15),
        "notify_url": "http://order.local/notify",
        **changes,
    }
    return PaymentOrder(**fields)  # type: ignore[arg-type]


def opened() -> Payment:
    return order().open("sbxpay_ref", NOW)


def paid() -> Payment:
    return opened().pay(Outcome.SUCCEED, "sbxtx_1", NOW + timedelta(minutes=1))


def test_a_new_payment_is_pending() -> None:
    assert opened().status_at(NOW) is SandboxStatus.PENDING


def test_refuses_to_open_a_payment_that_has_already_expired() -> None:
    with pytest.raises(ExpiryNotInFutureError):
        order(expires_at=NOW).open("sbxpay_ref", NOW)


def test_an_unpaid_payment_is_closed_from_its_expiry_on() -> None:
    payment = opened()

    assert payment.status_at(payment.expires_at - timedelta(microseconds=1)) is (
        SandboxStatus.PENDING
    )
    assert payment.status_at(payment.expires_at) is SandboxStatus.CLOSED


def test_a_failed_payment_is_closed_from_its_expiry_on() -> None:
    failed = opened().pay(Outcome.FAIL, "sbxtx_unused", NOW)

    assert failed.status_at(NOW) is SandboxStatus.FAILED
    assert failed.status_at(failed.expires_at) is SandboxStatus.CLOSED


def test_a_paid_payment_stays_paid_after_its_expiry() -> None:
    payment = paid()

    assert payment.status_at(payment.expires_at + timedelta(days=1)) is SandboxStatus.SUCCEEDED


def test_a_successful_tap_records_the_transaction_and_the_time() -> None:
    payment = paid()

    assert payment.status is SandboxStatus.SUCCEEDED
    assert payment.provider_transaction_id == "sbxtx_1"
    assert payment.paid_at == NOW + timedelta(minutes=1)


def test_a_failed_tap_may_be_followed_by_a_successful_one() -> None:
    failed = opened().pay(Outcome.FAIL, "sbxtx_1", NOW)

    assert failed.provider_transaction_id is None
    assert failed.pay(Outcome.SUCCEED, "sbxtx_2", NOW).status is SandboxStatus.SUCCEEDED


def test_refuses_a_tap_on_a_paid_payment() -> None:
    with pytest.raises(PaymentAlreadyPaidError):
        paid().pay(Outcome.SUCCEED, "sbxtx_2", NOW + timedelta(minutes=2))


def test_refuses_a_tap_on_a_closed_payment() -> None:
    payment = opened()

    with pytest.raises(PaymentClosedError):
        payment.pay(Outcome.SUCCEED, "sbxtx_1", payment.expires_at)


def test_partial_refunds_add_up_to_the_paid_amount_and_no_more() -> None:
    payment = paid().refund(3_000, NOW).refund(7_000, NOW)

    assert payment.refunded_minor == 10_000
    with pytest.raises(RefundExceedsPaymentError):
        payment.refund(1, NOW)


def test_refuses_a_single_refund_above_the_paid_amount() -> None:
    with pytest.raises(RefundExceedsPaymentError):
        paid().refund(10_001, NOW)


def test_refuses_to_refund_an_unpaid_payment() -> None:
    with pytest.raises(PaymentNotPaidError):
        opened().refund(1, NOW)


def test_the_same_payment_request_has_the_same_fingerprint_in_any_time_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    expires = NOW + timedelta(minutes=15)

    assert (
        order(expires_at=expires).fingerprint()
        == order(expires_at=expires.astimezone(shanghai)).fingerprint()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"order_id": "order-2"},
        {"amount_minor": 10_001},
        {"currency": "USD"},
        {"description": "mascara"},
        {"expires_at": NOW + timedelta(minutes=16)},
        {"notify_url": "http://elsewhere.local/notify"},
    ],
)
def test_any_other_payment_request_has_another_fingerprint(change: dict[str, object]) -> None:
    assert order(**change).fingerprint() != order().fingerprint()


def test_a_refund_request_with_another_amount_has_another_fingerprint() -> None:
    first = RefundOrder("refund-1", "pay-1", 100, "damaged")

    assert first.fingerprint() == RefundOrder("refund-1", "pay-1", 100, "damaged").fingerprint()
    assert first.fingerprint() != RefundOrder("refund-1", "pay-1", 101, "damaged").fingerprint()


def test_the_notification_body_carries_the_payment_and_the_status() -> None:
    notification_id = UUID("6f1c7a52-3b8e-4a55-9a1e-0b6a7f1f4d10")

    body = notification_body(notification_id, paid(), SandboxStatus.SUCCEEDED, NOW)

    assert json.loads(body) == {
        "notification_id": str(notification_id),
        "payment_id": "pay-1",
        "order_id": "order-1",
        "status": "succeeded",
        "amount_minor": 10_000,
        "currency": "CNY",
        "provider_transaction_id": "sbxtx_1",
        "occurred_at": "2025-11-22T12:00:00+00:00",
    }


def test_an_unpaid_notification_has_an_empty_transaction_id() -> None:
    body = notification_body(
        UUID(int=1), opened(), SandboxStatus.PENDING, NOW.astimezone(timezone(timedelta(hours=8)))
    )

    assert json.loads(body)["provider_transaction_id"] == ""
    assert json.loads(body)["occurred_at"] == "2025-11-22T12:00:00+00:00"


def test_retries_back_off_exponentially_up_to_the_maximum() -> None:
    schedule = BackoffSchedule(initial_seconds=1.0, max_seconds=10.0)

    waits = [schedule.after(attempt).total_seconds() for attempt in range(1, 7)]

    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.fixture
def no_sandbox_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SANDBOX_PAY_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_sandbox_settings_in_the_environment")
def test_settings_default_to_the_local_order_database_and_port_8190() -> None:
    settings = SandboxSettings()

    assert settings.http_port == 8190
    assert settings.postgres_dsn == "postgresql://postgres@127.0.0.1:55432/order"
    assert settings.postgres_schema == "sandbox_pay"
    assert settings.pay_base_url == "http://127.0.0.1:8190"


@pytest.mark.usefixtures("no_sandbox_settings_in_the_environment")
def test_settings_are_read_from_the_sandbox_pay_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_PAY_HTTP_PORT", "9190")
    monkeypatch.setenv("SANDBOX_PAY_PUBLIC_URL", "https://pay.example/")

    settings = SandboxSettings()

    assert settings.http_port == 9190
    assert settings.pay_base_url == "https://pay.example"


@pytest.mark.usefixtures("no_sandbox_settings_in_the_environment")
@pytest.mark.parametrize(
    ("api_key", "signing_secret", "refused"),
    [
        ("a-real-api-key", DEVELOPMENT_SANDBOX_SIGNING_SECRET, "sandbox signing secret"),
        (DEVELOPMENT_SANDBOX_API_KEY, "a-real-secret", "sandbox API key"),
    ],
)
def test_production_refuses_each_development_sandbox_secret(
    api_key: str, signing_secret: str, refused: str
) -> None:
    with pytest.raises(ValidationError, match=refused):
        SandboxSettings(
            environment=Environment.PRODUCTION,
            kafka_profile=KafkaProfile.KAFKA,
            jwt_signing_key=SecretStr("a-real-jwt-key"),
            api_key=SecretStr(api_key),
            signing_secret=SecretStr(signing_secret),
        )


@pytest.mark.usefixtures("no_sandbox_settings_in_the_environment")
def test_production_accepts_real_sandbox_secrets() -> None:
    settings = SandboxSettings(
        environment=Environment.PRODUCTION,
        kafka_profile=KafkaProfile.KAFKA,
        jwt_signing_key=SecretStr("a-real-jwt-key"),
        api_key=SecretStr("a-real-api-key"),
        signing_secret=SecretStr("a-real-secret"),
    )

    assert settings.signing_secret.get_secret_value() == "a-real-secret"


@pytest.mark.usefixtures("no_sandbox_settings_in_the_environment")
def test_refuses_a_schema_name_that_is_not_a_plain_identifier() -> None:
    with pytest.raises(ValidationError):
        SandboxSettings(postgres_schema='sandbox"; DROP SCHEMA public; --')
