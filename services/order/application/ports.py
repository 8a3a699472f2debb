"""What the order handlers need from the world, as Protocols, and the values they trade."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.kit.errors import PreconditionFailedError
from services.kit.eventstore import StoredEvent
from services.order.domain.order import Order, OrderEvent, Totals


class SoldOutError(PreconditionFailedError):
    """A line's sale has no units left for this order: nothing was held or charged."""


@dataclass(frozen=True)
class PricedLine:
    sku_id: str
    quantity: int
    sale_id: str
    list_unit_price: int
    unit_price: int
    promotion_discount: int
    coupon_share: int
    total: int
    promotion_kind: str
    promotion_id: str


@dataclass(frozen=True)
class PricedOrder:
    currency: str
    lines: tuple[PricedLine, ...]
    totals: Totals
    locked_coupon_ids: tuple[str, ...]
    explanation: tuple[str, ...]


@dataclass(frozen=True)
class PriceOrderQuery:
    merchant_id: str
    buyer_id: str
    room_id: str
    channel: str
    group_id: str
    lines: tuple[tuple[str, int], ...]
    coupon_ids: tuple[str, ...]
    order_id: str
    lock_until: datetime


class Pricing(Protocol):
    """The promotion service: prices an order and locks its coupons for it."""

    async def price_order(self, query: PriceOrderQuery) -> PricedOrder:
        """Price and lock the coupons for ``query.order_id`` (idempotent on it)."""
        ...

    async def release_coupons(self, merchant_id: str, order_id: str) -> None:
        """Undo the lock of an order that was not placed (idempotent)."""
        ...


@dataclass(frozen=True)
class Reservation:
    reserved: bool
    """False: sold out."""
    expires_at: datetime | None


class Stock(Protocol):
    """The inventory service's holds; the hold id is the order id (or order id + line)."""

    async def reserve(
        self,
        merchant_id: str,
        sale_id: str,
        buyer_id: str,
        quantity: int,
        hold_id: str,
        *,
        again: bool = False,
    ) -> Reservation:
        """Hold units; idempotent on hold_id; answered once the hold is durable. ``again``:
        the hold may exist already (a resumed checkout), so inventory must look it up rather
        than answer from what it remembers of the sale being sold out."""
        ...

    async def confirm(self, merchant_id: str, hold_id: str) -> bool:
        """Mark the hold paid; False when it had already been released (expired)."""
        ...

    async def release(self, merchant_id: str, hold_id: str, reason: str) -> None:
        """Give the hold's units back (idempotent)."""
        ...


@dataclass(frozen=True)
class TimerChange:
    kind: str
    key: str
    due_at: datetime | None
    """None: cancel the timer."""


class OrderStore(Protocol):
    """Orders kept as events, with their read model and timers kept in step."""

    async def load(self, merchant_id: str, order_id: str) -> Order:
        """The order as its events say (an order never placed has ``exists`` False)."""
        ...

    async def save(
        self,
        order: Order,
        events: Sequence[OrderEvent],
        timers: Sequence[TimerChange] = (),
        idempotency: IdempotencyKey | None = None,
    ) -> Order:
        """Append the events at the order's version (ConcurrencyError if it moved), update
        the read model, schedule or cancel the timers and mark the idempotency key done,
        all in one transaction; return the order with the events applied."""
        ...

    async def merchant_of(self, order_id: str) -> str | None:
        """Whose order this is, or None for an unknown order id."""
        ...

    async def history(self, merchant_id: str, order_id: str) -> list[StoredEvent]: ...


@dataclass(frozen=True)
class IdempotencyKey:
    merchant_id: str
    buyer_id: str
    key: str


@dataclass(frozen=True)
class Claim:
    order_id: str
    fingerprint: str
    mine: bool
    """True: this request claimed the key and runs the checkout; False: another did."""
    state: str
    """running | placed | failed"""
    failure: tuple[int, str, str] | None = None
    """(status, error class name, detail) of a failed checkout."""
    resumed: bool = False
    """True: this request took the key over from a checkout whose lease ran out, so the
    holds it asks for may exist already."""


class IdempotencyKeys(Protocol):
    """Checkout idempotency keys: one key, one checkout, one outcome."""

    async def claim(self, key: IdempotencyKey, fingerprint: str, order_id: str) -> Claim:
        """Claim the key for a new checkout of ``order_id``, or say who has it. A claim
        whose lease ran out (its checkout crashed) is taken over by the next caller."""
        ...

    async def fail(self, key: IdempotencyKey, status: int, error: str, detail: str) -> None:
        """Record a final failure: the same key gets the same answer."""
        ...

    async def forget(self, key: IdempotencyKey) -> None:
        """Drop the claim after a failure worth retrying (a dependency was down)."""
        ...

    async def get(self, key: IdempotencyKey) -> Claim | None: ...
