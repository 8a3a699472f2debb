"""The payment provider port over the sandbox gateway's HTTP API (``services.order.sandbox``).

Create, query and refund are idempotent at the gateway (on the payment and refund ids), so
a call that failed on the way (connection refused, timeout, 5xx) is retried a few times
with back-off before it surfaces as :class:`UnavailableError`. Notifications are verified
without I/O: signature first (HMAC-SHA256 over ``timestamp.body``, compared in constant
time), then the signed timestamp against the accepted clock skew, then the body.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    KitError,
    NotFoundError,
    PreconditionFailedError,
    UnavailableError,
)
from services.kit.logging import get_logger
from services.order.application.payments import (
    CreatedPayment,
    InvalidNotificationSignatureError,
    MalformedNotificationError,
    PaymentNotification,
    PaymentQuery,
    PaymentRequest,
    PaymentStatus,
    RefundReceipt,
    StaleNotificationError,
)
from services.order.sandbox.signing import (
    SIGNATURE_HEADER,
    SIGNATURE_HEX_LENGTH,
    TIMESTAMP_HEADER,
    sign,
)

log = get_logger(__name__)

DEFAULT_CLOCK_SKEW = timedelta(seconds=300)
_MAX_TIMESTAMP_DIGITS = 12


class SandboxUnavailableError(UnavailableError):
    """The sandbox could not be reached or failed; the call may be retried as it was."""


class SandboxRefusedError(UnavailableError):
    """The sandbox refused a call this adapter should never make (our API key, our request
    shape): a misconfiguration, not the caller's to fix."""


class _RetryableError(Exception):
    pass


class SandboxPaymentProvider:
    """``base_url`` is the gateway's (``http://127.0.0.1:8190``); ``api_key`` its merchant
    API key; ``signing_secret`` the secret its notifications are signed with."""

    name: str = "sandbox"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        signing_secret: str,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._secret = signing_secret
        self._clock_skew = clock_skew
        self._attempts = attempts
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        body = await self._call(
            "POST",
            "/v1/payments",
            {
                "payment_id": request.payment_id,
                "order_id": request.order_id,
                "amount_minor": request.amount_minor,
                "currency": request.currency,
                "description": request.description,
                "expires_at": request.expires_at.isoformat(),
                "notify_url": request.notify_url,
            },
        )
        return CreatedPayment(
            payment_id=body["payment_id"],
            provider=self.name,
            pay_url=body["pay_url"],
            provider_reference=body["provider_reference"],
        )

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> PaymentNotification:
        timestamp = self._verified_timestamp(headers, body)
        if abs(now.timestamp() - timestamp) > self._clock_skew.total_seconds():
            raise StaleNotificationError(
                f"notification signed at unix time {timestamp} is outside the accepted"
                f" {int(self._clock_skew.total_seconds())} s window"
            )
        return self._parse(body)

    def _verified_timestamp(self, headers: Mapping[str, str], body: bytes) -> int:
        """The signed timestamp, once the signature over it and the body is verified."""
        lowered = {name.lower(): value for name, value in headers.items()}
        timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
        signature = lowered.get(SIGNATURE_HEADER.lower(), "")
        if not timestamp or not signature:
            raise InvalidNotificationSignatureError("notification signature headers missing")
        if (
            not (timestamp.isascii() and timestamp.isdigit())
            or len(timestamp) > _MAX_TIMESTAMP_DIGITS
        ):
            raise InvalidNotificationSignatureError("notification timestamp is not unix seconds")
        if not signature.isascii() or len(signature) != SIGNATURE_HEX_LENGTH:
            raise InvalidNotificationSignatureError("notification signature is malformed")
        expected = sign(self._secret, int(timestamp), body)
        if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
            raise InvalidNotificationSignatureError("notification signature does not match")
        return int(timestamp)

    def _parse(self, body: bytes) -> PaymentNotification:
        try:
            fields = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedNotificationError("notification body is not JSON") from error
        if not isinstance(fields, dict):
            raise MalformedNotificationError("notification body is not a JSON object")
        try:
            notification = PaymentNotification(
                provider=self.name,
                notification_id=_text(fields, "notification_id"),
                payment_id=_text(fields, "payment_id"),
                order_id=_text(fields, "order_id"),
                status=PaymentStatus(_text(fields, "status")),
                amount_minor=_positive_int(fields, "amount_minor"),
                currency=_text(fields, "currency"),
                provider_transaction_id=_text(fields, "provider_transaction_id", empty_ok=True),
                occurred_at=_instant(fields, "occurred_at"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedNotificationError(f"notification body is malformed: {error}") from error
        return notification

    async def query(self, payment_id: str) -> PaymentQuery:
        body = await self._call("GET", f"/v1/payments/{quote(payment_id, safe='')}")
        paid_at = body.get("paid_at")
        return PaymentQuery(
            payment_id=body["payment_id"],
            status=PaymentStatus(body["status"]),
            amount_minor=body["amount_minor"],
            currency=body["currency"],
            provider_transaction_id=body.get("provider_transaction_id") or "",
            paid_at=datetime.fromisoformat(paid_at) if paid_at else None,
        )

    async def refund(
        self, payment_id: str, refund_id: str, amount_minor: int, reason: str
    ) -> RefundReceipt:
        body = await self._call(
            "POST",
            "/v1/refunds",
            {
                "refund_id": refund_id,
                "payment_id": payment_id,
                "amount_minor": amount_minor,
                "reason": reason,
            },
        )
        return RefundReceipt(
            refund_id=body["refund_id"],
            provider_refund_id=body["provider_refund_id"],
            amount_minor=body["amount_minor"],
            succeeded=body["status"] == "succeeded",
        )

    async def _call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One call, retried on what retrying can fix; the answer's JSON or a kit error."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception_type(_RetryableError),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._send(method, path, payload)
        except _RetryableError as error:
            raise SandboxUnavailableError(f"sandbox {method} {path}: {error}") from error
        answer: dict[str, Any] = response.json()
        return answer

    async def _send(
        self, method: str, path: str, payload: Mapping[str, Any] | None
    ) -> httpx.Response:
        try:
            response = await self._client.request(method, path, json=payload)
        except httpx.HTTPError as error:
            raise _RetryableError(f"{type(error).__name__}: {error}") from error
        if response.is_success:
            return response
        if response.status_code >= 500 or response.status_code == 429:
            raise _RetryableError(f"answered {response.status_code}")
        raise _error_for(response, f"sandbox {method} {path}")


def _error_for(response: httpx.Response, call: str) -> KitError:
    """The kit error for a 4xx answer, keeping the sandbox's problem detail."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = str(problem.get("detail") or response.text[:200])
    status = response.status_code
    if status == 404:
        return NotFoundError(detail)
    if status == 409:
        if problem.get("title") == AlreadyExistsError.title:
            return AlreadyExistsError(detail)
        return PreconditionFailedError(detail)
    if status == 422:
        return InvalidArgumentError(detail)
    log.error("sandbox refused a call", call=call, status=status, detail=detail)
    return SandboxRefusedError(f"{call} was refused ({status}): {detail}")


def _text(fields: Mapping[str, Any], name: str, *, empty_ok: bool = False) -> str:
    value = fields[name]
    if not isinstance(value, str) or (not value and not empty_ok):
        raise ValueError(f"{name} is not a non-empty string")
    return value


def _positive_int(fields: Mapping[str, Any], name: str) -> int:
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} is not a positive integer")
    return value


def _instant(fields: Mapping[str, Any], name: str) -> datetime:
    value = datetime.fromisoformat(_text(fields, name))
    if value.tzinfo is None:
        raise ValueError(f"{name} has no time zone")
    return value
