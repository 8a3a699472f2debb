"""What the inventory handlers need from the outside world."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.inventory.domain.sale import (
    FlashSale,
    FlashSaleScheduled,
    Hold,
    HoldState,
    ReleaseReason,
    ReservationConfirmed,
    ReservationReleased,
    ReserveStock,
    StockReserved,
)
from services.inventory.domain.stock import SkuStock, StockAllocatedToSale, StockEvent
from services.kit.context import MessageContext
from services.kit.errors import KitError


class StaleEpochError(KitError):
    """The hold was decided against a Redis state that has since been rebuilt: retry."""

    grpc_code = "ABORTED"
    title = "Retry"


@dataclass(frozen=True)
class PendingHold:
    """A hold Redis granted, waiting to be made durable."""

    merchant_id: str
    event: StockReserved
    context: MessageContext | None = None
    """The request that asked for it: its correlation ids go on the event."""


@dataclass(frozen=True)
class HoldRecord:
    """A hold as Redis keeps it (see reserve.lua)."""

    user_id: str
    quantity: int
    expiry_ms: int
    state: str
    bucket: int
    home_bucket: int
    epoch: int


@dataclass(frozen=True)
class Decision:
    """What Redis decided for one reservation."""

    outcome: str
    expiry_ms: int = 0
    remaining: int = 0
    epoch: int = 0
    bucket: int = 0
    home_bucket: int = 0
    existing: HoldRecord | None = None
    limit: int = 0


@dataclass(frozen=True)
class Released:
    outcome: str
    quantity: int = 0
    returned_to_sku: bool = False


@dataclass(frozen=True)
class DurableHold:
    """A hold as the event store knows it, to rebuild Redis from."""

    hold_id: str
    user_id: str
    quantity: int
    state: str  # held | confirmed | released | returned
    expires_at: datetime
    bucket: int
    home_bucket: int


@dataclass
class SaleSnapshot:
    """Redis's view of a sale, summed over its buckets."""

    exists: bool = False
    epoch: int = 0
    closed: bool = False
    available: int = 0
    held: int = 0
    sold: int = 0
    users: Counter[str] = field(default_factory=Counter)
    holds: dict[str, HoldRecord] = field(default_factory=dict)
    """Every hold Redis keeps, by id: the record of the bucket that holds its units, or its
    home bucket's record while it has none (a spill not settled yet)."""


class StockRepository(Protocol):
    """Loads SKU stock from its events and appends new ones with optimistic concurrency."""

    async def load(self, merchant_id: str, sku_id: str) -> SkuStock:
        """The SKU's stock; a SKU never seen has version 0 and nothing on hand."""
        ...

    async def save(self, stock: SkuStock, events: list[StockEvent]) -> SkuStock:
        """Append events after ``stock.version``; ConcurrencyError if it moved on."""
        ...


class FlashStock(Protocol):
    """The deciding copy of flash-sale stock (Redis): atomic, fast, rebuildable."""

    async def reserve_many(
        self, requests: Sequence[tuple[FlashSale, ReserveStock]], now_ms: int
    ) -> list[Decision]: ...

    async def confirm(self, sale: FlashSale, hold_id: str, bucket: int) -> str: ...

    async def release(
        self,
        sale: FlashSale,
        hold_id: str,
        bucket: int,
        home: int,
        now_ms: int,
        *,
        only_if_expired: bool,
        forget: bool = False,
    ) -> Released:
        """Give a hold's units back (idempotent). ``only_if_expired``: only a held hold past
        its expiry (the sweeper). ``forget``: a hold that never became durable; drop it."""
        ...

    async def release_many(
        self,
        sale: FlashSale,
        holds: Sequence[tuple[str, int, int]],
        now_ms: int,
        *,
        only_if_expired: bool,
        forget: bool = False,
    ) -> list[Released]:
        """``release`` for many holds of one sale, ``(hold id, bucket, home bucket)`` each,
        in one round trip; the answers in the same order."""
        ...

    async def close(self, sale: FlashSale) -> int: ...

    async def expiring(
        self, sales: Sequence[FlashSale], now_ms: int, limit: int
    ) -> list[list[list[str]] | None]:
        """For each sale, in one round trip for them all: None when Redis has lost it (a
        bucket is missing), else per bucket the ids of at most ``limit`` holds whose time
        ran out by ``now_ms``."""
        ...

    async def records(
        self, sale: FlashSale, bucket: int, hold_ids: Sequence[str]
    ) -> list[HoldRecord | None]:
        """What the bucket keeps of each hold (None: nothing), in one round trip."""
        ...

    async def forget_pending(self, sale: FlashSale, bucket: int, hold_id: str) -> None: ...

    async def exists(self, sale: FlashSale) -> bool: ...

    async def load(
        self, sale: FlashSale, epoch: int, holds: Sequence[DurableHold], closed: bool
    ) -> None:
        """Replace the sale's state with the one given (a rebuild)."""
        ...

    async def snapshot(self, sale: FlashSale) -> SaleSnapshot: ...

    async def announce_restock(self, sale: FlashSale) -> None:
        """Tell every process that the sale may have stock again."""
        ...


class Counters(Protocol):
    """A sale's durable counts: allocated == available + held + sold + returned."""

    @property
    def allocated(self) -> int: ...

    @property
    def held(self) -> int: ...

    @property
    def sold(self) -> int: ...

    @property
    def returned(self) -> int: ...

    @property
    def epoch(self) -> int: ...

    @property
    def ended(self) -> bool: ...

    @property
    def available(self) -> int: ...


class LockedSale(Protocol):
    """A sale under its row lock; what is recorded is written when the block ends."""

    sale: FlashSale

    @property
    def counters(self) -> Counters: ...

    async def hold(self, hold_id: str) -> Hold: ...

    async def holds(self, hold_ids: Sequence[str]) -> list[Hold]:
        """The holds, in the order asked, in one read (one that does not exist has
        ``exists`` false)."""
        ...

    async def durable_holds(self) -> list[DurableHold]: ...

    def bump_epoch(self) -> int: ...

    def confirm(self, hold: Hold, event: ReservationConfirmed) -> None: ...

    async def release(self, hold: Hold, event: ReservationReleased) -> None: ...

    async def end(self, unsold: int) -> None: ...

    async def return_unrecorded(self, quantity: int) -> None:
        """Units Redis granted to a hold that never became durable, given back after the
        sale closed: they go back to the SKU."""
        ...


class SaleRecords(Protocol):
    """The durable record of sales and holds (the event store and what it implies)."""

    async def sale(self, merchant_id: str, sale_id: str) -> tuple[FlashSale, Counters]: ...

    async def live_sales(self) -> list[FlashSale]:
        """Sales that may still hold units (see the ledger)."""
        ...

    async def hold(self, merchant_id: str, hold_id: str) -> Hold: ...

    async def recorded_holds(self, merchant_id: str, hold_ids: Sequence[str]) -> set[str]:
        """Which of these holds the store has, in one read."""
        ...

    async def sku(self, merchant_id: str, sku_id: str) -> SkuStock: ...

    async def schedule(
        self, sku: SkuStock, allocated: StockAllocatedToSale, scheduled: FlashSaleScheduled
    ) -> None: ...

    async def record_reservations(
        self, pending: Sequence[PendingHold]
    ) -> list[BaseException | None]:
        """Group commit: one transaction for many holds; per hold None when durable, or why
        it was refused (StaleEpochError, HoldConflictError, SaleNotFoundError)."""
        ...

    @property
    def group_commits(self) -> int:
        """How many record_reservations calls may run at once."""
        ...

    def locked_sale(
        self, merchant_id: str, sale_id: str
    ) -> AbstractAsyncContextManager[LockedSale, bool | None]: ...

    async def sale_as_of_now(
        self, merchant_id: str, sale_id: str
    ) -> tuple[FlashSale, Counters, list[DurableHold]] | None:
        """The sale, its counts and its holds as one snapshot of the store, read without
        its lock (a writer is neither waited for nor kept waiting); None: no such sale."""
        ...


class HoldReleaser(Protocol):
    """Gives a hold's units back (FlashSales.release). Idempotent: a repeat changes nothing.
    Raises NotFoundError for a hold it does not know, InvalidArgumentError for a malformed
    id."""

    async def release(self, merchant_id: str, hold_id: str, reason: ReleaseReason) -> HoldState: ...
