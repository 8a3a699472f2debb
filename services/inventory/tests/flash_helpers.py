"""What the flash-sale integration tests share: a sale staged on a fresh SKU, and an audit
that recounts a sale's books four ways (the sale row, the flash_holds rows, the events,
Redis through reconcile) and checks they agree and conserve the units.

Not collected by pytest (no ``test_`` prefix); imported by the test modules.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import asyncpg

from services.inventory.adapters import codec
from services.inventory.adapters.redis_stock import RedisFlashStock
from services.inventory.application.flash_sales import FlashSales, Reservation, SaleStatus
from services.inventory.application.handlers import receive_stock
from services.inventory.bootstrap import Inventory, forget_sold_out_on_restock
from services.inventory.domain.sale import (
    AllocateToSale,
    FlashSale,
    FlashSaleEnded,
    ReservationConfirmed,
    ReservationReleased,
    ReserveStock,
    SaleSoldOut,
    StockReserved,
)
from services.inventory.domain.stock import ReceiveStock
from services.inventory.tests.conftest import Clock
from services.kit.errors import KitError
from services.kit.eventstore import EVENT_COLUMNS, stored_event_from_row
from services.kit.redis import create_redis
from services.kit.testing import unique

T = TypeVar("T")

DEADLINE_SECONDS = 20.0
"""No waiting loop in these tests runs longer than this."""


@dataclass
class Stage:
    """One flash sale on a SKU of its own, for a merchant of its own (so Redis keys, events
    and SKU counts of one test never meet another's)."""

    parts: Inventory
    clock: Clock
    merchant: str
    sku: str
    sale: FlashSale
    received: int
    instance: FlashSales | None = None
    """The FlashSales to act through, if not the one of ``parts``."""

    @property
    def flash_sales(self) -> FlashSales:
        return self.instance or self.parts.flash_sales

    @property
    def redis_stock(self) -> RedisFlashStock:
        return RedisFlashStock(self.parts.redis)

    def command(
        self, user: str, quantity: int = 1, hold: str | None = None, *, sale_id: str | None = None
    ) -> ReserveStock:
        return ReserveStock(
            merchant_id=self.merchant,
            sale_id=sale_id or self.sale.sale_id,
            user_id=user,
            quantity=quantity,
            hold_id=hold or unique("hold"),
        )

    async def reserve(
        self,
        user: str,
        quantity: int = 1,
        hold: str | None = None,
        *,
        via: FlashSales | None = None,
        retry: bool = False,
    ) -> Reservation:
        command = self.command(user, quantity, hold)
        return await (via or self.flash_sales).reserve(command, retry=retry)

    async def status(self) -> SaleStatus:
        return await self.flash_sales.status(self.merchant, self.sale.sale_id)

    async def epoch(self) -> int:
        _, counters = await self.parts.ledger.sale(self.merchant, self.sale.sale_id)
        return counters.epoch

    async def on_hand(self) -> int:
        return (await self.parts.ledger.sku(self.merchant, self.sku)).on_hand

    async def lose_redis(self) -> None:
        """Redis forgets this sale (and only this sale: Redis is shared)."""
        await self.redis_stock.forget(self.sale)

    def forget_sold_out(self, *instances: FlashSales) -> None:
        for instance in instances or (self.flash_sales,):
            instance.sold_out.forget(self.merchant, self.sale.sale_id)


async def stage_sale(
    parts: Inventory,
    clock: Clock,
    *,
    allocated: int,
    received: int | None = None,
    per_user_limit: int = 2,
    buckets: int = 1,
    hold_ttl_seconds: int = 60,
    opens_in: float = -1.0,
    lasts: float = 3600.0,
) -> Stage:
    """Receive stock on a new SKU and schedule a sale of ``allocated`` of it, open from
    ``opens_in`` seconds from now (negative: already open) for ``lasts`` seconds."""
    merchant, sku = unique("merchant"), unique("sku")
    received = allocated if received is None else received
    await receive_stock(ReceiveStock(merchant, sku, received), parts.stock)
    starts_at = clock() + timedelta(seconds=opens_in)
    sale = await parts.flash_sales.schedule(
        AllocateToSale(
            merchant_id=merchant,
            sale_id=unique("sale"),
            sku_id=sku,
            quantity=allocated,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(seconds=lasts),
            per_user_limit=per_user_limit,
            hold_ttl_seconds=hold_ttl_seconds,
            buckets=buckets,
        )
    )
    return Stage(parts, clock, merchant, sku, sale, received)


@asynccontextmanager
async def patient_replica(
    parts: Inventory, clock: Clock, *, sold_out_ttl: float | None = None
) -> AsyncIterator[FlashSales]:
    """One more process's FlashSales on the same database and Redis, built as bootstrap
    builds it, and listening for restock announcements as the served processes do."""
    settings = parts.settings
    redis = create_redis(settings.redis_url)
    flash_sales = FlashSales(
        parts.ledger,
        RedisFlashStock(redis),
        clock=clock,
        max_batch=settings.reserve_max_batch,
        sold_out_ttl=sold_out_ttl or settings.sold_out_memory_seconds,
    )
    stop = asyncio.Event()
    listening = asyncio.create_task(forget_sold_out_on_restock(redis, flash_sales.sold_out, stop))
    try:
        yield flash_sales
    finally:
        stop.set()
        await asyncio.wait_for(listening, DEADLINE_SECONDS)
        await redis.aclose()


# -- recounting the books ------------------------------------------------------------------


@dataclass
class HoldTally:
    """A sale's holds folded from its hold events (the event store's own account)."""

    reserved_events: int = 0
    confirmed_events: int = 0
    released_events: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    state: dict[str, str] = field(default_factory=dict)
    quantity: dict[str, int] = field(default_factory=dict)
    user: dict[str, str] = field(default_factory=dict)
    returned_by_holds: int = 0
    returned_at_end: int = 0
    ended_events: int = 0
    sold_out_sequences: list[int] = field(default_factory=list)

    def units(self, state: str) -> int:
        return sum(self.quantity[h] for h, s in self.state.items() if s == state)


async def events_of(pool: asyncpg.Pool, merchant: str) -> list[codec.DomainEvent]:
    rows = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE merchant_id = $1 ORDER BY position",  # noqa: S608
        merchant,
    )
    return [codec.decode(stored_event_from_row(r)) for r in rows]


async def tally(stage: Stage) -> HoldTally:
    found = HoldTally()
    sale_id = stage.sale.sale_id
    for event in await events_of(stage.parts.pool, stage.merchant):
        if isinstance(event, StockReserved) and event.sale_id == sale_id:
            found.reserved_events += 1
            found.state[event.hold_id] = "held"
            found.quantity[event.hold_id] = event.quantity
            found.user[event.hold_id] = event.user_id
        elif isinstance(event, ReservationConfirmed) and event.sale_id == sale_id:
            found.confirmed_events += 1
            found.state[event.hold_id] = "confirmed"
        elif isinstance(event, ReservationReleased) and event.sale_id == sale_id:
            found.released_events += 1
            found.reasons[event.reason.value] += 1
            found.state[event.hold_id] = "returned" if event.returned_to_sku else "released"
            if event.returned_to_sku:
                found.returned_by_holds += event.quantity
        elif isinstance(event, FlashSaleEnded) and event.sale_id == sale_id:
            found.ended_events += 1
            found.returned_at_end += event.returned
        elif isinstance(event, SaleSoldOut) and event.sale_id == sale_id:
            found.sold_out_sequences.append(event.sequence)
    return found


async def hold_rows(stage: Stage) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await stage.parts.pool.fetch(
        "SELECT hold_id, user_id, quantity, state, bucket, home_bucket, epoch FROM flash_holds"
        " WHERE merchant_id = $1 AND sale_id = $2",
        stage.merchant,
        stage.sale.sale_id,
    )
    return rows


async def audit(stage: Stage, *, expect_drift: bool = False) -> SaleStatus:
    """Every account of the sale agrees and conserves its units; return its status."""
    status = await stage.status()
    allocated = stage.sale.allocated
    assert status.allocated == allocated
    assert status.allocated == status.available + status.held + status.sold + status.returned
    assert min(status.available, status.held, status.sold, status.returned) >= 0, status

    rows = await hold_rows(stage)
    by_state: Counter[str] = Counter()
    for row in rows:
        by_state[row["state"]] += row["quantity"]
    assert by_state["held"] == status.held, (by_state, status)
    assert by_state["confirmed"] == status.sold, (by_state, status)

    events = await tally(stage)
    assert events.reserved_events == len(rows) == len(events.state)
    assert {r["hold_id"]: r["state"] for r in rows} == events.state
    assert events.units("held") == status.held
    assert events.units("confirmed") == status.sold
    assert events.returned_by_holds + events.returned_at_end == status.returned
    assert events.ended_events == (1 if status.sale.ended else 0)

    users: Counter[str] = Counter()
    for row in rows:
        if row["state"] in ("held", "confirmed"):
            users[row["user_id"]] += row["quantity"]
    assert all(units <= stage.sale.per_user_limit for units in users.values()), users

    assert await stage.on_hand() == stage.received - allocated + status.returned
    if not expect_drift:
        assert await stage.flash_sales.reconcile([stage.sale]) == []
    return status


# -- running many calls ----------------------------------------------------------------------


def causes(error: BaseException) -> Iterable[BaseException]:
    """The error and every error it was raised from or during."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def tripped_no_oversell(outcomes: Sequence[object]) -> list[BaseException]:
    """The failures caused by the store's no_oversell constraint (the last line of defence:
    it must never be what stopped an oversell)."""
    return [
        o
        for o in outcomes
        if isinstance(o, BaseException)
        and any(isinstance(c, asyncpg.CheckViolationError) for c in causes(o))
    ]


def unexpected(outcomes: Sequence[object]) -> list[object]:
    """Outcomes that are neither an answer nor an error the caller is meant to see."""
    return [o for o in outcomes if not isinstance(o, Reservation | KitError)]


def later(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(seconds=seconds)
