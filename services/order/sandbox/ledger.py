"""The sandbox gateway's Postgres tables: payments, refunds and the notification outbox.

Every change to a payment and the notifications it causes commit in one transaction, so a
restart loses no notification and sends none for a change that did not happen.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from services.kit.db import Connection
from services.order.sandbox.model import (
    Payment,
    PaymentIdReusedError,
    PaymentOrder,
    PayStep,
    Refund,
    RefundIdReusedError,
    RefundOrder,
    SandboxStatus,
    UnknownPaymentError,
    UnknownRefundError,
    notification_body,
)

Clock = Callable[[], datetime]

_PAYMENT_COLUMNS = (
    "payment_id, provider_reference, order_id, amount_minor, currency, description,"
    " expires_at, notify_url, fingerprint, status, provider_transaction_id, paid_at,"
    " refunded_minor, created_at"
)
_REFUND_COLUMNS = (
    "refund_id, provider_refund_id, payment_id, amount_minor, reason, fingerprint, created_at"
)
# The queries are built once from the constant column lists above: no input reaches them.
_PAYMENT_BY_ID = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE payment_id = $1"  # noqa: S608
_PAYMENT_BY_REFERENCE = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE provider_reference = $1"  # noqa: S608
_INSERT_PAYMENT = (
    f"INSERT INTO payments ({_PAYMENT_COLUMNS})"  # noqa: S608
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    f" ON CONFLICT (payment_id) DO NOTHING RETURNING {_PAYMENT_COLUMNS}"
)
_REFUND_BY_ID = f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE refund_id = $1"  # noqa: S608
_INSERT_REFUND = (
    f"INSERT INTO refunds ({_REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"  # noqa: S608
    f" ON CONFLICT (refund_id) DO NOTHING RETURNING {_REFUND_COLUMNS}"
)


def _payment(row: asyncpg.Record) -> Payment:
    return Payment(**{**dict(row), "status": SandboxStatus(row["status"])})


def _refund(row: asyncpg.Record) -> Refund:
    return Refund(**dict(row))


class SandboxLedger:
    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    async def create_payment(self, order: PaymentOrder) -> tuple[Payment, bool]:
        """The payment and whether this call created it (False: the same request again)."""
        existing = await self._payment_for(order)
        if existing is not None:
            return existing, False
        payment = order.open(f"sbxpay_{secrets.token_hex(16)}", self._clock())
        row = await self._pool.fetchrow(
            _INSERT_PAYMENT,
            payment.payment_id,
            payment.provider_reference,
            payment.order_id,
            payment.amount_minor,
            payment.currency,
            payment.description,
            payment.expires_at,
            payment.notify_url,
            payment.fingerprint,
            str(payment.status),
            payment.provider_transaction_id,
            payment.paid_at,
            payment.refunded_minor,
            payment.created_at,
        )
        if row is not None:
            return _payment(row), True
        raced = await self._payment_for(order)
        assert raced is not None, "a payment that conflicted on insert exists"
        return raced, False

    async def _payment_for(self, order: PaymentOrder) -> Payment | None:
        row = await self._pool.fetchrow(_PAYMENT_BY_ID, order.payment_id)
        if row is None:
            return None
        if row["fingerprint"] != order.fingerprint():
            raise PaymentIdReusedError(
                f"payment {order.payment_id} exists and was created from another request"
            )
        return _payment(row)

    async def payment(self, payment_id: str) -> Payment:
        return await self._one_payment(_PAYMENT_BY_ID, payment_id)

    async def payment_by_reference(self, provider_reference: str) -> Payment:
        return await self._one_payment(_PAYMENT_BY_REFERENCE, provider_reference)

    async def _one_payment(self, query: str, key: str) -> Payment:
        row = await self._pool.fetchrow(query, key)
        if row is None:
            raise UnknownPaymentError(f"no payment {key}")
        return _payment(row)

    async def pay(self, provider_reference: str, step: PayStep) -> tuple[Payment, UUID]:
        """Apply the buyer's tap and queue its notification (``step.duplicates`` copies, then
        the stale one if asked for); return the payment and the notification id."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"{_PAYMENT_BY_REFERENCE} FOR UPDATE",
                provider_reference,
            )
            if row is None:
                raise UnknownPaymentError(f"no payment {provider_reference}")
            before = _payment(row)
            now = self._clock()
            paid = before.pay(step.outcome, f"sbxtx_{uuid4().hex}", now)
            await conn.execute(
                "UPDATE payments SET status = $2, provider_transaction_id = $3, paid_at = $4"
                " WHERE payment_id = $1",
                paid.payment_id,
                str(paid.status),
                paid.provider_transaction_id,
                paid.paid_at,
            )
            due_at = now + step.delay
            notification_id = uuid4()
            body = notification_body(notification_id, paid, paid.status, now)
            await _enqueue(conn, notification_id, paid, body, due_at, step.duplicates)
            if step.out_of_order and paid.status is SandboxStatus.SUCCEEDED:
                stale_id = uuid4()
                stale = notification_body(stale_id, before, step.stale_status, before.created_at)
                await _enqueue(conn, stale_id, paid, stale, due_at, copies=1)
        return paid, notification_id

    async def refund(self, order: RefundOrder) -> tuple[Refund, bool]:
        """The refund and whether this call made it (False: the same request again)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"{_PAYMENT_BY_ID} FOR UPDATE",
                order.payment_id,
            )
            if row is None:
                raise UnknownPaymentError(f"no payment {order.payment_id}")
            existing = await conn.fetchrow(_REFUND_BY_ID, order.refund_id)
            if existing is not None:
                if existing["fingerprint"] != order.fingerprint():
                    raise RefundIdReusedError(
                        f"refund {order.refund_id} exists and was made from another request"
                    )
                return _refund(existing), False
            now = self._clock()
            refunded = _payment(row).refund(order.amount_minor, now)
            inserted = await conn.fetchrow(
                _INSERT_REFUND,
                order.refund_id,
                f"sbxrf_{uuid4().hex}",
                order.payment_id,
                order.amount_minor,
                order.reason,
                order.fingerprint(),
                now,
            )
            if inserted is None:
                # Taken meanwhile by a refund of another payment (this payment's are
                # serialized by its row lock, so the taker's request differs from ours).
                raise RefundIdReusedError(
                    f"refund {order.refund_id} exists and was made from another request"
                )
            await conn.execute(
                "UPDATE payments SET refunded_minor = $2 WHERE payment_id = $1",
                refunded.payment_id,
                refunded.refunded_minor,
            )
        return _refund(inserted), True

    async def refund_by_id(self, refund_id: str) -> Refund:
        row = await self._pool.fetchrow(_REFUND_BY_ID, refund_id)
        if row is None:
            raise UnknownRefundError(f"no refund {refund_id}")
        return _refund(row)


async def _enqueue(
    conn: Connection,
    notification_id: UUID,
    payment: Payment,
    body: str,
    due_at: datetime,
    copies: int,
) -> None:
    await conn.executemany(
        "INSERT INTO notification_deliveries"
        " (notification_id, payment_id, notify_url, body, due_at) VALUES ($1, $2, $3, $4, $5)",
        [(notification_id, payment.payment_id, payment.notify_url, body, due_at)] * copies,
    )
