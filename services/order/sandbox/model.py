"""The sandbox gateway's payments and refunds and the rules between them. Pure: no I/O.

The gateway is a stand-in for an outside provider, so it has its own statuses and errors
and imports nothing of the order service.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
)


class SandboxStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class Outcome(StrEnum):
    """What the buyer's tap on the hosted pay step ends in."""

    SUCCEED = "succeed"
    FAIL = "fail"


class UnknownPaymentError(NotFoundError):
    pass


class UnknownRefundError(NotFoundError):
    pass


class PaymentIdReusedError(AlreadyExistsError):
    """The merchant payment number is taken by a payment created from another request."""


class RefundIdReusedError(AlreadyExistsError):
    """The refund id is taken by a refund created from another request."""


class ExpiryNotInFutureError(InvalidArgumentError):
    pass


class PaymentClosedError(PreconditionFailedError):
    pass


class PaymentAlreadyPaidError(PreconditionFailedError):
    pass


class PaymentNotPaidError(PreconditionFailedError):
    pass


class RefundExceedsPaymentError(PreconditionFailedError):
    pass


def _fingerprint(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PaymentOrder:
    """The merchant's request to open a payment."""

    payment_id: str
    order_id: str
    amount_minor: int
    currency: str
    description: str
    expires_at: datetime
    notify_url: str

    def fingerprint(self) -> str:
        """Equal for two requests that mean the same payment (the same instant in any
        time zone is the same expiry)."""
        return _fingerprint({**asdict(self), "expires_at": self.expires_at.astimezone(UTC)})

    def open(self, provider_reference: str, now: datetime) -> Payment:
        if self.expires_at <= now:
            raise ExpiryNotInFutureError("expires_at must be in the future")
        return Payment(
            payment_id=self.payment_id,
            provider_reference=provider_reference,
            order_id=self.order_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
            description=self.description,
            expires_at=self.expires_at,
            notify_url=self.notify_url,
            fingerprint=self.fingerprint(),
            status=SandboxStatus.PENDING,
            provider_transaction_id=None,
            paid_at=None,
            refunded_minor=0,
            created_at=now,
        )


@dataclass(frozen=True)
class Payment:
    payment_id: str
    provider_reference: str
    order_id: str
    amount_minor: int
    currency: str
    description: str
    expires_at: datetime
    notify_url: str
    fingerprint: str
    status: SandboxStatus
    """As stored: never ``closed``; see :meth:`status_at`."""
    provider_transaction_id: str | None
    paid_at: datetime | None
    refunded_minor: int
    created_at: datetime

    def status_at(self, now: datetime) -> SandboxStatus:
        """A payment not paid by ``expires_at`` is closed from then on; a paid one stays
        paid. Closing is a matter of time alone, so it is derived, never written."""
        if self.status is not SandboxStatus.SUCCEEDED and now >= self.expires_at:
            return SandboxStatus.CLOSED
        return self.status

    def pay(self, outcome: Outcome, transaction_id: str, now: datetime) -> Payment:
        """The buyer's tap. A failed attempt may be followed by another, as with real
        providers; a closed or paid payment takes no more taps."""
        status = self.status_at(now)
        if status is SandboxStatus.CLOSED:
            raise PaymentClosedError(f"payment {self.payment_id} is closed")
        if status is SandboxStatus.SUCCEEDED:
            raise PaymentAlreadyPaidError(f"payment {self.payment_id} is already paid")
        if outcome is Outcome.FAIL:
            return replace(self, status=SandboxStatus.FAILED)
        return replace(
            self,
            status=SandboxStatus.SUCCEEDED,
            provider_transaction_id=transaction_id,
            paid_at=now,
        )

    @property
    def refundable_minor(self) -> int:
        return self.amount_minor - self.refunded_minor

    def refund(self, amount_minor: int, now: datetime) -> Payment:
        """Refunds of one payment add up to at most its amount."""
        if self.status_at(now) is not SandboxStatus.SUCCEEDED:
            raise PaymentNotPaidError(f"payment {self.payment_id} is not paid")
        if amount_minor > self.refundable_minor:
            raise RefundExceedsPaymentError(
                f"refund of {amount_minor} exceeds the {self.refundable_minor} still refundable"
                f" of payment {self.payment_id}"
            )
        return replace(self, refunded_minor=self.refunded_minor + amount_minor)


@dataclass(frozen=True)
class RefundOrder:
    refund_id: str
    payment_id: str
    amount_minor: int
    reason: str

    def fingerprint(self) -> str:
        return _fingerprint(asdict(self))


@dataclass(frozen=True)
class Refund:
    refund_id: str
    provider_refund_id: str
    payment_id: str
    amount_minor: int
    reason: str
    fingerprint: str
    created_at: datetime


@dataclass(frozen=True)
class PayStep:
    """The hosted pay step and its knobs for real-world notification behaviour."""

    outcome: Outcome = Outcome.SUCCEED
    duplicates: int = 1
    """Deliver the notification this many times, each copy with the same notification id."""
    delay: timedelta = timedelta()
    """Hold every delivery of this tap back this long."""
    out_of_order: bool = False
    """After a success, also deliver a stale notification of an earlier status."""
    stale_status: SandboxStatus = SandboxStatus.FAILED


def notification_body(
    notification_id: UUID, payment: Payment, status: SandboxStatus, occurred_at: datetime
) -> str:
    """The JSON a notification carries, compact and key-sorted. It is signed and stored as
    these exact characters, so every retry and copy sends the same bytes."""
    return json.dumps(
        {
            "notification_id": str(notification_id),
            "payment_id": payment.payment_id,
            "order_id": payment.order_id,
            "status": str(status),
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
            "provider_transaction_id": payment.provider_transaction_id or "",
            "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
