"""Delivering the sandbox's notifications from its outbox, the way real providers do: POST,
signed afresh on every attempt, retried with exponential back-off until the receiver
answers 2xx or the attempts run out.

The schedule is durable: a claimed delivery has its attempt counted and its due time moved
past the attempt's timeout (a lease) in one short transaction, so a crash mid-attempt
means a retry after the lease, never a lost notification. The back-off between attempts is
tenacity's exponential wait, applied to the due time rather than slept in process. Rows of
one payment go out one after another in (due_at, delivery_id) order; payments go out side
by side.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import httpx
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from services.kit.logging import get_logger
from services.order.sandbox.settings import SandboxSettings
from services.order.sandbox.signing import signed_headers

log = get_logger(__name__)

_LEASE_MARGIN = timedelta(seconds=5)


@dataclass(frozen=True)
class _Delivery:
    delivery_id: int
    payment_id: str
    notify_url: str
    body: str
    attempts: int
    was_due_at: datetime


class BackoffSchedule:
    """How long to wait after the n-th failed attempt: tenacity's exponential wait."""

    def __init__(self, initial_seconds: float, max_seconds: float) -> None:
        self._wait = wait_exponential(multiplier=initial_seconds, max=max_seconds)

    def after(self, attempt: int) -> timedelta:
        state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return timedelta(seconds=self._wait(state))


class NotificationDeliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient,
        settings: SandboxSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._client = client
        self._secret = settings.signing_secret.get_secret_value()
        self._max_attempts = settings.notify_max_attempts
        self._timeout = settings.notify_timeout_seconds
        self._poll_interval = settings.notify_poll_interval_seconds
        self._batch_size = settings.notify_batch_size
        self._backoff = BackoffSchedule(
            settings.notify_backoff_initial_seconds, settings.notify_backoff_max_seconds
        )
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                delivered = await self.deliver_due()
            except Exception as error:
                log.error("notification delivery round failed", exc_info=error)
                delivered = 0
            if delivered < self._batch_size:
                await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        await asyncio.wait(
            waiters, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waiters:
            waiter.cancel()

    async def deliver_due(self) -> int:
        """Claim one batch of due deliveries and attempt each once; return how many."""
        claimed = await self._claim()
        by_payment: dict[str, list[_Delivery]] = defaultdict(list)
        for delivery in sorted(claimed, key=lambda d: (d.was_due_at, d.delivery_id)):
            by_payment[delivery.payment_id].append(delivery)
        outcomes = await asyncio.gather(
            *(self._deliver_in_order(rows) for rows in by_payment.values()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # Its rows stay claimed until the lease runs out, then go out again.
                log.error("notification delivery failed to record", exc_info=outcome)
        return len(claimed)

    async def _claim(self) -> list[_Delivery]:
        now = self._clock()
        lease_until = now + timedelta(seconds=self._timeout) + _LEASE_MARGIN
        rows = await self._pool.fetch(
            "WITH due AS ("
            " SELECT delivery_id, due_at FROM notification_deliveries"
            " WHERE delivered_at IS NULL AND gave_up_at IS NULL AND due_at <= $1"
            " ORDER BY due_at, delivery_id LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " UPDATE notification_deliveries AS d SET attempts = d.attempts + 1, due_at = $3"
            " FROM due WHERE d.delivery_id = due.delivery_id"
            " RETURNING d.delivery_id, d.payment_id, d.notify_url, d.body, d.attempts,"
            " due.due_at AS was_due_at",
            now,
            self._batch_size,
            lease_until,
        )
        return [_Delivery(**dict(row)) for row in rows]

    async def _deliver_in_order(self, deliveries: list[_Delivery]) -> None:
        for delivery in deliveries:
            await self._attempt(delivery)

    async def _attempt(self, delivery: _Delivery) -> None:
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            **signed_headers(self._secret, int(self._clock().timestamp()), body),
        }
        status: int | None = None
        try:
            response = await self._client.post(
                delivery.notify_url, content=body, headers=headers, timeout=self._timeout
            )
            status = response.status_code
            error = None if response.is_success else f"receiver answered {status}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        await self._record(delivery, status, error)

    async def _record(self, delivery: _Delivery, status: int | None, error: str | None) -> None:
        now = self._clock()
        if error is None:
            await self._pool.execute(
                "UPDATE notification_deliveries SET delivered_at = $2, last_status = $3,"
                " last_error = NULL WHERE delivery_id = $1",
                delivery.delivery_id,
                now,
                status,
            )
            return
        gave_up = delivery.attempts >= self._max_attempts
        log.warning(
            "notification delivery failed",
            delivery_id=delivery.delivery_id,
            payment_id=delivery.payment_id,
            attempt=delivery.attempts,
            gave_up=gave_up,
            error=error,
        )
        await self._pool.execute(
            "UPDATE notification_deliveries SET last_status = $2, last_error = $3,"
            " due_at = $4, gave_up_at = $5 WHERE delivery_id = $1",
            delivery.delivery_id,
            status,
            error[:2000],
            now + self._backoff.after(delivery.attempts),
            now if gave_up else None,
        )
