"""SKU stock kept as events in the inventory event store."""

from __future__ import annotations

from services.inventory.adapters import codec
from services.inventory.domain.stock import (
    AllocationReturned,
    SkuStock,
    StockAllocatedToSale,
    StockEvent,
    StockReceived,
)
from services.kit.db import Connection
from services.kit.eventstore import EventStore, StreamAppend

SKU_EVENTS = (StockReceived, StockAllocatedToSale, AllocationReturned)


class EventSourcedStockRepository:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def load(
        self, merchant_id: str, sku_id: str, *, conn: Connection | None = None
    ) -> SkuStock:
        """``conn``: read in the caller's transaction (see ``EventStore.read_stream``). Only
        the stream's last event is read (see ``SkuStock.after``)."""
        last = await self._store.last_event(SkuStock.stream_id(merchant_id, sku_id), conn=conn)
        if last is None:
            return SkuStock(merchant_id, sku_id)
        event = codec.decode(last)
        if not isinstance(event, SKU_EVENTS):
            raise TypeError(f"not a SKU event in SKU {sku_id}'s stream: {last.event_type}")
        return SkuStock.after(merchant_id, sku_id, event, last.version)

    async def save(self, stock: SkuStock, events: list[StockEvent]) -> SkuStock:
        await self._store.append(
            [
                StreamAppend(
                    stream_id=SkuStock.stream_id(stock.merchant_id, stock.sku_id),
                    aggregate_type=codec.AGGREGATE_SKU,
                    merchant_id=stock.merchant_id,
                    expected_version=stock.version,
                    events=[codec.encode(e) for e in events],
                )
            ]
        )
        for event in events:
            stock = stock.apply(event)
        return stock
