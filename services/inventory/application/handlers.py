"""Inventory use cases: plain async functions of a command and their ports."""

from __future__ import annotations

from services.inventory.application.ports import StockRepository
from services.inventory.domain.stock import (
    ReceiveStock,
    SkuNotFoundError,
    SkuStock,
    validate_sku_id,
)
from services.kit.eventstore import retry_on_conflict


async def receive_stock(command: ReceiveStock, stock: StockRepository) -> SkuStock:
    validate_sku_id(command.sku_id)

    async def attempt() -> SkuStock:
        current = await stock.load(command.merchant_id, command.sku_id)
        return await stock.save(current, [current.receive(command)])

    return await retry_on_conflict(attempt)


async def get_stock(merchant_id: str, sku_id: str, stock: StockRepository) -> SkuStock:
    validate_sku_id(sku_id)
    found = await stock.load(merchant_id, sku_id)
    if found.version == 0:
        raise SkuNotFoundError(f"SKU {sku_id} not found")
    return found
