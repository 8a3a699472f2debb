"""The sandbox gateway's HTTP API: the merchant API under ``/v1`` (bearer API key), the
hosted pay step under ``/pay`` (no key: the unguessable provider reference is the buyer's
ticket, as a prepay id is), and the notification deliverer running beside them.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
import httpx
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl

from services.kit.db import create_pool, migrate
from services.kit.errors import UnauthenticatedError
from services.kit.eventstore import utcnow
from services.kit.http import add_readiness_check, create_app
from services.kit.tenancy import MAX_ID_LENGTH
from services.order.sandbox.delivery import NotificationDeliverer
from services.order.sandbox.ledger import SandboxLedger
from services.order.sandbox.model import (
    Outcome,
    Payment,
    PaymentOrder,
    PayStep,
    Refund,
    RefundOrder,
    SandboxStatus,
)
from services.order.sandbox.settings import SandboxSettings

SCHEMA_PACKAGE = "services.order.sandbox"
ID_PATTERN = r"^[\x21-\x7e]+$"
MAX_AMOUNT_MINOR = 10**12
MAX_DUPLICATES = 20
MAX_DELAY_MS = 3_600_000

Clock = Callable[[], datetime]
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]


class NewPayment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: Id
    order_id: Id
    amount_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str = Field(default="", max_length=256)
    expires_at: AwareDatetime
    notify_url: HttpUrl


class CreatedPaymentView(BaseModel):
    payment_id: str
    provider_reference: str
    pay_url: str
    status: SandboxStatus


class PaymentView(BaseModel):
    payment_id: str
    order_id: str
    status: SandboxStatus
    amount_minor: int
    currency: str
    refunded_minor: int
    provider_transaction_id: str | None
    paid_at: datetime | None
    expires_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, payment: Payment, now: datetime) -> PaymentView:
        return cls(
            payment_id=payment.payment_id,
            order_id=payment.order_id,
            status=payment.status_at(now),
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            refunded_minor=payment.refunded_minor,
            provider_transaction_id=payment.provider_transaction_id,
            paid_at=payment.paid_at,
            expires_at=payment.expires_at,
            created_at=payment.created_at,
        )


class PayChoice(BaseModel):
    """The buyer's tap, with knobs for testing how a receiver copes with real providers."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = Outcome.SUCCEED
    duplicates: int = Field(
        default=1, ge=1, le=MAX_DUPLICATES, description="Copies of the notification to deliver"
    )
    delay_ms: int = Field(
        default=0, ge=0, le=MAX_DELAY_MS, description="Hold the notification back this long"
    )
    out_of_order: bool = Field(
        default=False,
        description="After a success, also deliver a stale notification of an earlier status",
    )
    stale_status: Literal["pending", "failed"] = "failed"


class PayResult(BaseModel):
    payment_id: str
    status: SandboxStatus
    provider_transaction_id: str | None
    notification_id: UUID


class NewRefund(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: Id
    payment_id: Id
    amount_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR)
    reason: str = Field(default="", max_length=256)


class RefundView(BaseModel):
    refund_id: str
    provider_refund_id: str
    payment_id: str
    amount_minor: int
    reason: str
    status: Literal["succeeded"] = "succeeded"
    created_at: datetime

    @classmethod
    def of(cls, refund: Refund) -> RefundView:
        return cls(
            refund_id=refund.refund_id,
            provider_refund_id=refund.provider_refund_id,
            payment_id=refund.payment_id,
            amount_minor=refund.amount_minor,
            reason=refund.reason,
            created_at=refund.created_at,
        )


@dataclass(frozen=True)
class Sandbox:
    settings: SandboxSettings
    ledger: SandboxLedger
    deliverer: NotificationDeliverer
    clock: Clock


def _sandbox(request: Request) -> Sandbox:
    parts: Sandbox = request.app.state.sandbox
    return parts


_bearer = HTTPBearer(auto_error=False, description="The sandbox's merchant API key")


def _require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = _sandbox(request).settings.api_key.get_secret_value().encode("utf-8")
    offered = credentials.credentials.encode("utf-8") if credentials else b""
    if not hmac.compare_digest(offered, expected):
        raise UnauthenticatedError("missing or wrong API key")


merchant = APIRouter(prefix="/v1", tags=["merchant"], dependencies=[Depends(_require_api_key)])
hosted = APIRouter(prefix="/pay", tags=["hosted pay step"])


@merchant.post("/payments", status_code=201, response_model=CreatedPaymentView)
async def create_payment(
    body: NewPayment, request: Request, response: Response
) -> CreatedPaymentView:
    """Idempotent on ``payment_id``: the same request again answers 200 with the same
    payment; another request under the same number is a 409."""
    parts = _sandbox(request)
    payment, created = await parts.ledger.create_payment(
        PaymentOrder(
            payment_id=body.payment_id,
            order_id=body.order_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            description=body.description,
            expires_at=body.expires_at,
            notify_url=str(body.notify_url),
        )
    )
    if not created:
        response.status_code = 200
    return CreatedPaymentView(
        payment_id=payment.payment_id,
        provider_reference=payment.provider_reference,
        pay_url=f"{parts.settings.pay_base_url}/pay/{payment.provider_reference}",
        status=payment.status_at(parts.clock()),
    )


@merchant.get("/payments/{payment_id}", response_model=PaymentView)
async def query_payment(payment_id: PathId, request: Request) -> PaymentView:
    parts = _sandbox(request)
    return PaymentView.of(await parts.ledger.payment(payment_id), parts.clock())


@merchant.post("/refunds", status_code=201, response_model=RefundView)
async def create_refund(body: NewRefund, request: Request, response: Response) -> RefundView:
    """Idempotent on ``refund_id``; refunds of a payment add up to at most its amount."""
    refund, created = await _sandbox(request).ledger.refund(
        RefundOrder(
            refund_id=body.refund_id,
            payment_id=body.payment_id,
            amount_minor=body.amount_minor,
            reason=body.reason,
        )
    )
    if not created:
        response.status_code = 200
    return RefundView.of(refund)


@merchant.get("/refunds/{refund_id}", response_model=RefundView)
async def query_refund(refund_id: PathId, request: Request) -> RefundView:
    return RefundView.of(await _sandbox(request).ledger.refund_by_id(refund_id))


@hosted.post("/{provider_reference}", response_model=PayResult)
async def pay(
    provider_reference: PathId,
    request: Request,
    choice: Annotated[PayChoice | None, Body()] = None,
) -> PayResult:
    """The buyer's tap. A closed or already paid payment answers 409."""
    choice = choice or PayChoice()
    parts = _sandbox(request)
    payment, notification_id = await parts.ledger.pay(
        provider_reference,
        PayStep(
            outcome=choice.outcome,
            duplicates=choice.duplicates,
            delay=timedelta(milliseconds=choice.delay_ms),
            out_of_order=choice.out_of_order,
            stale_status=SandboxStatus(choice.stale_status),
        ),
    )
    parts.deliverer.wake()
    return PayResult(
        payment_id=payment.payment_id,
        status=payment.status,
        provider_transaction_id=payment.provider_transaction_id,
        notification_id=notification_id,
    )


_PAY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sandbox pay</title></head>
<body>
<h1>Sandbox pay</h1>
<p>Order {order_id}: {amount} {currency} (minor units). Status: <b>{status}</b>.</p>
<button onclick="tap('succeed')">Pay</button> <button onclick="tap('fail')">Fail</button>
<pre id="answer"></pre>
<script>
async function tap(outcome) {{
  const response = await fetch(location.pathname, {{method: "POST",
    headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{outcome}})}});
  document.getElementById("answer").textContent = await response.text();
}}
</script>
</body></html>
"""


@hosted.get("/{provider_reference}", response_class=HTMLResponse)
async def pay_page(provider_reference: PathId, request: Request) -> HTMLResponse:
    """A page for a person to tap on; tests POST instead."""
    parts = _sandbox(request)
    payment = await parts.ledger.payment_by_reference(provider_reference)
    return HTMLResponse(
        _PAY_PAGE.format(
            order_id=escape(payment.order_id),
            amount=payment.amount_minor,
            currency=escape(payment.currency),
            status=payment.status_at(parts.clock()),
        )
    )


async def _open_pool(settings: SandboxSettings) -> asyncpg.Pool:
    """A pool confined to the sandbox's schema, created if missing, with its tables."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{settings.postgres_schema}"')
    finally:
        await conn.close()
    pool = await create_pool(
        settings.postgres_dsn,
        min_size=settings.postgres_pool_min,
        max_size=settings.postgres_pool_max,
        search_path=settings.postgres_schema,
    )
    try:
        await migrate(pool, [SCHEMA_PACKAGE])
    except BaseException:
        await pool.close()
        raise
    return pool


def create_sandbox_app(settings: SandboxSettings, *, clock: Clock = utcnow) -> FastAPI:
    """The gateway; ``clock`` is the time expiry and notifications are judged by (tests
    move it). Its lifespan opens the database and runs the notification deliverer."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await _open_pool(settings)
        stop = asyncio.Event()
        async with httpx.AsyncClient(follow_redirects=False) as client:
            deliverer = NotificationDeliverer(pool, client, settings, clock)
            app.state.sandbox = Sandbox(settings, SandboxLedger(pool, clock), deliverer, clock)
            add_readiness_check(app, "postgres", lambda: pool.fetchval("SELECT 1"))
            delivering = asyncio.create_task(deliverer.run(stop))
            try:
                yield
            finally:
                stop.set()
                await delivering
                await pool.close()

    return create_app(
        settings, title="Sandbox payment gateway", routers=[merchant, hosted], lifespan=lifespan
    )
