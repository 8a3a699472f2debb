"""SKU stock: how many units of a SKU a merchant has on hand, changed only by events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from services.kit.errors import InvalidArgumentError, NotFoundError
from services.kit.tenancy import validate_merchant_id

MAX_RECEIPT = 10_000_000
MAX_SKU_ID_LENGTH = 64


class InvalidQuantityError(InvalidArgumentError):
    pass


class InvalidSkuIdError(InvalidArgumentError):
    pass


class SkuNotFoundError(NotFoundError):
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


StockEvent = StockReceived


def validate_sku_id(sku_id: str) -> str:
    if not sku_id or len(sku_id) > MAX_SKU_ID_LENGTH or not sku_id.isprintable() or " " in sku_id:
        raise InvalidSkuIdError(
            f"a SKU id is 1 to {MAX_SKU_ID_LENGTH} printable characters without spaces"
        )
    return sku_id


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

    def apply(self, event: StockEvent) -> SkuStock:
        return replace(self, on_hand=event.on_hand_after, version=self.version + 1)
