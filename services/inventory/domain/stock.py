"""SKU stock: how many units of a SKU a merchant has on hand, changed only by events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from services.kit.errors import InvalidArgumentError, NotFoundError, PreconditionFailedError
from services.kit.tenancy import MAX_ID_LENGTH, validate_id, validate_merchant_id

MAX_RECEIPT = 10_000_000
MAX_SKU_ID_LENGTH = MAX_ID_LENGTH


class InvalidQuantityError(InvalidArgumentError):
    pass


class InvalidSkuIdError(InvalidArgumentError):
    pass


class SkuNotFoundError(NotFoundError):
    pass


class InsufficientStockError(PreconditionFailedError):
    pass


@dataclass(frozen=True)
class ReceiveStock:
    merchant_id: str
    sku_id: str
    quantity: int
    note: str = ""


@dataclass(frozen=True)
class StockReceived:
    sku_id: str
    quantity: int
    on_hand_after: int
    note: str


@dataclass(frozen=True)
class StockAllocatedToSale:
    sku_id: str
    sale_id: str
    quantity: int
    on_hand_after: int


@dataclass(frozen=True)
class AllocationReturned:
    sku_id: str
    sale_id: str
    quantity: int
    on_hand_after: int


StockEvent = StockReceived | StockAllocatedToSale | AllocationReturned


def validate_sku_id(sku_id: str) -> str:
    try:
        return validate_id(sku_id, "SKU id")
    except InvalidArgumentError as error:
        raise InvalidSkuIdError(error.detail) from error


@dataclass(frozen=True)
class SkuStock:
    merchant_id: str
    sku_id: str
    on_hand: int = 0
    version: int = 0

    @staticmethod
    def stream_id(merchant_id: str, sku_id: str) -> str:
        """Unambiguous because a merchant id never contains ':'."""
        return f"sku:{validate_merchant_id(merchant_id)}:{sku_id}"

    @classmethod
    def replay(cls, merchant_id: str, sku_id: str, events: Iterable[StockEvent]) -> SkuStock:
        stock = cls(merchant_id=merchant_id, sku_id=sku_id)
        for event in events:
            stock = stock.apply(event)
        return stock

    @classmethod
    def after(cls, merchant_id: str, sku_id: str, event: StockEvent, version: int) -> SkuStock:
        """The SKU as its ``version``-th event left it. Every SKU event carries the count on
        hand after it, so its last event alone is the SKU's state: loading a SKU does not
        replay a stream that grows by an event with every sale's allocation and every unit
        given back to it (which made each release after a sale had ended replay the whole
        stream: quadratic in the holds expiring after the end)."""
        return cls(merchant_id, sku_id, on_hand=event.on_hand_after, version=version)

    def receive(self, command: ReceiveStock) -> StockReceived:
        if not 0 < command.quantity <= MAX_RECEIPT:
            raise InvalidQuantityError(
                f"quantity must be between 1 and {MAX_RECEIPT}, got {command.quantity}"
            )
        return StockReceived(
            sku_id=self.sku_id,
            quantity=command.quantity,
            on_hand_after=self.on_hand + command.quantity,
            note=command.note,
        )

    def allocate(self, sale_id: str, quantity: int) -> StockAllocatedToSale:
        if quantity <= 0:
            raise InvalidQuantityError(f"allocate at least 1 unit, not {quantity}")
        if quantity > self.on_hand:
            raise InsufficientStockError(
                f"SKU {self.sku_id} has {self.on_hand} on hand; cannot allocate {quantity}"
            )
        return StockAllocatedToSale(self.sku_id, sale_id, quantity, self.on_hand - quantity)

    def take_back(self, sale_id: str, quantity: int) -> AllocationReturned:
        return AllocationReturned(self.sku_id, sale_id, quantity, self.on_hand + quantity)

    def apply(self, event: StockEvent) -> SkuStock:
        return replace(self, on_hand=event.on_hand_after, version=self.version + 1)
