"""The payment provider port: what the order service needs from WeChat Pay, Alipay, Stripe
or the built-in sandbox. An adapter per provider implements it; the domain never sees one.

Every provider works the same way seen from here: the order service creates a payment for
an order, the buyer completes it on the provider's hosted step, and the provider tells the
order service what happened through signed asynchronous notifications, which may arrive
late, several times or out of order. The query call asks the provider directly (used to
reconcile when a notification is missing). Refunds are idempotent on the refund id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from services.kit.errors import InvalidArgumentError, UnauthenticatedError


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class InvalidNotificationSignatureError(UnauthenticatedError):
    """The notification is not signed by the provider (forged, tampered or malformed)."""


class StaleNotificationError(UnauthenticatedError):
    """The notification's signed timestamp is outside the accepted window (a replay)."""


class MalformedNotificationError(InvalidArgumentError):
    """Correctly signed but not a notification this service understands."""


@dataclass(frozen=True)
class PaymentRequest:
    payment_id: str
    """Ours, unique per attempt; the provider's merchant order number."""
    order_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    description: str
    expires_at: datetime
    """The provider closes the payment at this moment if it is not paid."""
    notify_url: str
    """Where the provider posts its signed notifications."""


@dataclass(frozen=True)
class CreatedPayment:
    payment_id: str
    provider: str
    pay_url: str
    """The hosted step the buyer completes the payment on."""
    provider_reference: str


@dataclass(frozen=True)
class PaymentNotification:
    """A verified notification: the provider says a payment reached ``status``."""

    provider: str
    notification_id: str
    payment_id: str
    order_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    provider_transaction_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class PaymentQuery:
    payment_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    provider_transaction_id: str
    paid_at: datetime | None


@dataclass(frozen=True)
class RefundReceipt:
    refund_id: str
    provider_refund_id: str
    amount_minor: int
    succeeded: bool


class PaymentProvider(Protocol):
    """One payment provider, as the order service uses it."""

    name: str

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        """Open a payment; idempotent on ``request.payment_id``."""
        ...

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> PaymentNotification:
        """Check the signature and its timestamp, then parse; raise
        InvalidNotificationSignatureError, StaleNotificationError or
        MalformedNotificationError. Pure: no I/O."""
        ...

    async def query(self, payment_id: str) -> PaymentQuery:
        """What the provider knows of the payment now."""
        ...

    async def refund(
        self, payment_id: str, refund_id: str, amount_minor: int, reason: str
    ) -> RefundReceipt:
        """Refund part or all of a paid payment; idempotent on ``refund_id``."""
        ...

    async def aclose(self) -> None:
        """Release the provider's connections."""
        ...
