"""What the inventory handlers need from the outside world."""

from __future__ import annotations

from typing import Protocol

from services.inventory.domain.stock import SkuStock, StockEvent


class StockRepository(Protocol):
    """Loads SKU stock from its events and appends new ones with optimistic concurrency."""

    async def load(self, merchant_id: str, sku_id: str) -> SkuStock:
        """The SKU's stock; a SKU never seen has version 0 and nothing on hand."""
        ...

    async def save(self, stock: SkuStock, events: list[StockEvent]) -> SkuStock:
        """Append events after ``stock.version``; ConcurrencyError if it moved on."""
        ...
