"""Flash sales and holds.

A flash sale sets units of one SKU aside for a time window with a per-user limit. Buyers
hold units (a reservation with a time-to-live) and then pay (confirm) or not (release).
Who gets a unit is decided atomically in Redis (adapters/redis_stock.py); these aggregates
are the durable record the decision is rebuilt from, and they check what may follow what.

Conservation, at every moment: allocated == available + held + sold + returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.inventory.domain.stock import MAX_RECEIPT, InvalidQuantityError
from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
)
from services.kit.tenancy import validate_id, validate_merchant_id

MAX_PER_USER_LIMIT = 1000
MIN_HOLD_TTL_SECONDS = 5
MAX_HOLD_TTL_SECONDS = 24 * 3600
DEFAULT_HOLD_TTL_SECONDS = 15 * 60
MAX_BUCKETS = 64
MAX_RESERVE_QUANTITY = MAX_PER_USER_LIMIT


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: how Redis and the Lua scripts keep time."""
    return int(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


class SaleNotFoundError(NotFoundError):
    pass


class SaleExistsError(AlreadyExistsError):
    pass


class SaleNotOpenError(PreconditionFailedError):
    pass


class PerUserLimitError(PreconditionFailedError):
    pass


class HoldNotFoundError(NotFoundError):
    pass


class HoldConflictError(AlreadyExistsError):
    """The hold id is taken by a hold with other content."""


class HoldReleasedError(PreconditionFailedError):
    pass


class SaleState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    ENDED = "ended"


class HoldState(StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"


class ReleaseReason(StrEnum):
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    UNACKNOWLEDGED = "unacknowledged"
    """Redis decided the hold but it never became durable: the buyer was never told."""


@dataclass(frozen=True)
class AllocateToSale:
    merchant_id: str
    sale_id: str
    sku_id: str
    quantity: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    hold_ttl_seconds: int = DEFAULT_HOLD_TTL_SECONDS
    buckets: int = 1


@dataclass(frozen=True)
class FlashSaleScheduled:
    sale_id: str
    sku_id: str
    allocated: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    hold_ttl_seconds: int
    buckets: int


@dataclass(frozen=True)
class FlashSaleEnded:
    sale_id: str
    sku_id: str
    returned: int


@dataclass(frozen=True)
class SaleSoldOut:
    sale_id: str
    sku_id: str
    sequence: int


SaleEvent = FlashSaleScheduled | FlashSaleEnded | SaleSoldOut


@dataclass(frozen=True)
class FlashSale:
    merchant_id: str
    sale_id: str
    sku_id: str = ""
    allocated: int = 0
    starts_at: datetime = datetime.min
    ends_at: datetime = datetime.min
    per_user_limit: int = 0
    hold_ttl_seconds: int = DEFAULT_HOLD_TTL_SECONDS
    buckets: int = 1
    ended: bool = False
    version: int = 0

    @staticmethod
    def stream_id(merchant_id: str, sale_id: str) -> str:
        return f"sale:{validate_merchant_id(merchant_id)}:{sale_id}"

    @classmethod
    def replay(cls, merchant_id: str, sale_id: str, events: Iterable[SaleEvent]) -> FlashSale:
        sale = cls(merchant_id=merchant_id, sale_id=sale_id)
        for event in events:
            sale = sale.apply(event)
        return sale

    @property
    def exists(self) -> bool:
        return self.version > 0

    def state(self, now: datetime) -> SaleState:
        if self.ended or now >= self.ends_at:
            return SaleState.ENDED
        if now < self.starts_at:
            return SaleState.SCHEDULED
        return SaleState.OPEN

    def schedule(self, command: AllocateToSale, now: datetime) -> FlashSaleScheduled | None:
        """None when this sale exists with the very same definition: scheduling is
        idempotent on the sale id, so a caller may repeat a request whose answer it lost."""
        validate_id(command.sale_id, "sale id")
        if self.exists:
            if self.is_defined_by(command):
                return None
            raise SaleExistsError(f"sale {command.sale_id} already exists with another definition")
        if not 1 <= command.quantity <= MAX_RECEIPT:
            raise InvalidQuantityError(f"allocate 1 to {MAX_RECEIPT} units, not {command.quantity}")
        if command.ends_at <= command.starts_at:
            raise InvalidArgumentError("the sale must end after it starts")
        if command.ends_at <= now:
            raise InvalidArgumentError("the sale's window is already over")
        if not 1 <= command.per_user_limit <= MAX_PER_USER_LIMIT:
            raise InvalidArgumentError(f"per-user limit must be 1 to {MAX_PER_USER_LIMIT}")
        if not MIN_HOLD_TTL_SECONDS <= command.hold_ttl_seconds <= MAX_HOLD_TTL_SECONDS:
            raise InvalidArgumentError(
                f"hold time-to-live must be {MIN_HOLD_TTL_SECONDS} to {MAX_HOLD_TTL_SECONDS} s"
            )
        if not 1 <= command.buckets <= MAX_BUCKETS:
            raise InvalidArgumentError(f"buckets must be 1 to {MAX_BUCKETS}")
        if command.buckets > command.quantity:
            raise InvalidArgumentError("more buckets than units")
        return FlashSaleScheduled(
            sale_id=command.sale_id,
            sku_id=command.sku_id,
            allocated=command.quantity,
            starts_at=command.starts_at,
            ends_at=command.ends_at,
            per_user_limit=command.per_user_limit,
            hold_ttl_seconds=command.hold_ttl_seconds,
            buckets=command.buckets,
        )

    def is_defined_by(self, command: AllocateToSale) -> bool:
        return (
            self.merchant_id,
            self.sale_id,
            self.sku_id,
            self.allocated,
            self.starts_at,
            self.ends_at,
            self.per_user_limit,
            self.hold_ttl_seconds,
            self.buckets,
        ) == (
            command.merchant_id,
            command.sale_id,
            command.sku_id,
            command.quantity,
            command.starts_at,
            command.ends_at,
            command.per_user_limit,
            command.hold_ttl_seconds,
            command.buckets,
        )

    def end(self, unsold: int) -> FlashSaleEnded:
        if not self.exists:
            raise SaleNotFoundError(f"sale {self.sale_id} not found")
        if self.ended:
            raise SaleNotOpenError(f"sale {self.sale_id} has already ended")
        return FlashSaleEnded(self.sale_id, self.sku_id, unsold)

    def apply(self, event: SaleEvent) -> FlashSale:
        if isinstance(event, FlashSaleScheduled):
            return replace(
                self,
                sku_id=event.sku_id,
                allocated=event.allocated,
                starts_at=event.starts_at,
                ends_at=event.ends_at,
                per_user_limit=event.per_user_limit,
                hold_ttl_seconds=event.hold_ttl_seconds,
                buckets=event.buckets,
                version=self.version + 1,
            )
        if isinstance(event, FlashSaleEnded):
            return replace(self, ended=True, version=self.version + 1)
        return replace(self, version=self.version + 1)

    def hold_expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.hold_ttl_seconds)


@dataclass(frozen=True)
class StockReserved:
    hold_id: str
    sale_id: str
    sku_id: str
    user_id: str
    quantity: int
    expires_at: datetime
    bucket: int
    home_bucket: int
    epoch: int


@dataclass(frozen=True)
class ReservationConfirmed:
    hold_id: str
    sale_id: str
    sku_id: str
    quantity: int


@dataclass(frozen=True)
class ReservationReleased:
    hold_id: str
    sale_id: str
    sku_id: str
    quantity: int
    reason: ReleaseReason
    returned_to_sku: bool


HoldEvent = StockReserved | ReservationConfirmed | ReservationReleased


@dataclass(frozen=True)
class ReserveStock:
    merchant_id: str
    sale_id: str
    user_id: str
    quantity: int
    hold_id: str

    def validated(self) -> ReserveStock:
        validate_merchant_id(self.merchant_id)
        validate_id(self.sale_id, "sale id")
        validate_id(self.user_id, "user id")
        validate_id(self.hold_id, "hold id")
        if not 1 <= self.quantity <= MAX_RESERVE_QUANTITY:
            raise InvalidQuantityError(
                f"quantity must be between 1 and the sale's per-user limit, got {self.quantity}"
            )
        return self


@dataclass(frozen=True)
class Hold:
    merchant_id: str
    hold_id: str
    sale_id: str = ""
    sku_id: str = ""
    user_id: str = ""
    quantity: int = 0
    state: HoldState = HoldState.HELD
    expires_at: datetime = datetime.min
    bucket: int = 0
    home_bucket: int = 0
    version: int = 0

    @staticmethod
    def stream_id(merchant_id: str, hold_id: str) -> str:
        return f"hold:{validate_merchant_id(merchant_id)}:{hold_id}"

    @classmethod
    def replay(cls, merchant_id: str, hold_id: str, events: Iterable[HoldEvent]) -> Hold:
        hold = cls(merchant_id=merchant_id, hold_id=hold_id)
        for event in events:
            hold = hold.apply(event)
        return hold

    @property
    def exists(self) -> bool:
        return self.version > 0

    def confirm(self) -> ReservationConfirmed | None:
        """None when already confirmed (idempotent)."""
        if not self.exists:
            raise HoldNotFoundError(f"hold {self.hold_id} not found")
        if self.state is HoldState.RELEASED:
            raise HoldReleasedError(f"hold {self.hold_id} was released; it cannot be paid")
        if self.state is HoldState.CONFIRMED:
            return None
        return ReservationConfirmed(self.hold_id, self.sale_id, self.sku_id, self.quantity)

    def release(self, reason: ReleaseReason, sale_ended: bool) -> ReservationReleased | None:
        """None when already released (idempotent)."""
        if not self.exists:
            raise HoldNotFoundError(f"hold {self.hold_id} not found")
        if self.state is HoldState.RELEASED:
            return None
        return ReservationReleased(
            self.hold_id, self.sale_id, self.sku_id, self.quantity, reason, sale_ended
        )

    def apply(self, event: HoldEvent) -> Hold:
        if isinstance(event, StockReserved):
            return replace(
                self,
                sale_id=event.sale_id,
                sku_id=event.sku_id,
                user_id=event.user_id,
                quantity=event.quantity,
                expires_at=event.expires_at,
                bucket=event.bucket,
                home_bucket=event.home_bucket,
                state=HoldState.HELD,
                version=self.version + 1,
            )
        if isinstance(event, ReservationConfirmed):
            return replace(self, state=HoldState.CONFIRMED, version=self.version + 1)
        return replace(self, state=HoldState.RELEASED, version=self.version + 1)
