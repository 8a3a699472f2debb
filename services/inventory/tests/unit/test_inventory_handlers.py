"""Inventory use cases over the event-sourced repository and the in-memory event store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from livecommerce.inventory.v1 import events_pb2
from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.application.handlers import get_stock, receive_stock
from services.inventory.domain.stock import (
    InvalidQuantityError,
    InvalidSkuIdError,
    ReceiveStock,
    SkuNotFoundError,
    SkuStock,
    StockReceived,
)
from services.kit.db import Connection
from services.kit.errors import ConcurrencyError, NotFoundError
from services.kit.eventstore import InMemoryEventStore, StoredEvent, StreamAppend
from services.kit.tenancy import InvalidMerchantIdError


class InterleavingEventStore(InMemoryEventStore):
    """The in-memory store, but other tasks run between reading a stream and appending to
    it, as they do against a real database; it counts the appends that lost a race."""

    def __init__(self) -> None:
        super().__init__()
        self.conflicts = 0

    async def read_stream(
        self, stream_id: str, after_version: int = 0, *, conn: Connection | None = None
    ) -> list[StoredEvent]:
        found = await super().read_stream(stream_id, after_version, conn=conn)
        await asyncio.sleep(0)
        return found

    async def append(
        self,
        appends: Sequence[StreamAppend],
        *,
        conn: Connection | None = None,
        savepoint: bool = True,
    ) -> list[StoredEvent]:
        try:
            return await super().append(appends, conn=conn, savepoint=savepoint)
        except ConcurrencyError:
            self.conflicts += 1
            raise


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def stock(store: InMemoryEventStore) -> EventSourcedStockRepository:
    return EventSourcedStockRepository(store)


def receipt(quantity: int, sku_id: str = "sku-1", merchant_id: str = "merchant-1") -> ReceiveStock:
    return ReceiveStock(merchant_id=merchant_id, sku_id=sku_id, quantity=quantity, note="dock")


async def test_receiving_stock_of_a_new_sku_puts_it_on_hand(
    stock: EventSourcedStockRepository,
) -> None:
    received = await receive_stock(receipt(5), stock)

    assert received == SkuStock("merchant-1", "sku-1", on_hand=5, version=1)
    assert await get_stock("merchant-1", "sku-1", stock) == received


async def test_receiving_stock_twice_accumulates(stock: EventSourcedStockRepository) -> None:
    await receive_stock(receipt(5), stock)
    second = await receive_stock(receipt(3), stock)

    assert second == SkuStock("merchant-1", "sku-1", on_hand=8, version=2)
    assert await get_stock("merchant-1", "sku-1", stock) == second


async def test_records_a_receipt_as_a_stock_received_event_of_the_skus_stream(
    store: InMemoryEventStore, stock: EventSourcedStockRepository
) -> None:
    await receive_stock(receipt(5), stock)
    await receive_stock(receipt(3), stock)

    events = await store.read_all(0)

    assert [e.stream_id for e in events] == ["sku:merchant-1:sku-1"] * 2
    assert [e.version for e in events] == [1, 2]
    assert {e.aggregate_type for e in events} == {"sku"}
    assert {e.merchant_id for e in events} == {"merchant-1"}
    assert [events_pb2.StockReceived.FromString(e.payload) for e in events] == [
        events_pb2.StockReceived(sku_id="sku-1", quantity=5, on_hand_after=5, note="dock"),
        events_pb2.StockReceived(sku_id="sku-1", quantity=3, on_hand_after=8, note="dock"),
    ]


async def test_keeps_the_stock_of_one_sku_id_apart_between_merchants(
    stock: EventSourcedStockRepository,
) -> None:
    await receive_stock(receipt(5, merchant_id="merchant-1"), stock)
    await receive_stock(receipt(7, merchant_id="merchant-2"), stock)

    assert (await get_stock("merchant-1", "sku-1", stock)).on_hand == 5
    assert (await get_stock("merchant-2", "sku-1", stock)).on_hand == 7


async def test_reports_a_sku_never_received_as_not_found(
    stock: EventSourcedStockRepository,
) -> None:
    await receive_stock(receipt(5, sku_id="sku-known"), stock)

    with pytest.raises(SkuNotFoundError, match="SKU sku-unknown not found") as missing:
        await get_stock("merchant-1", "sku-unknown", stock)

    assert isinstance(missing.value, NotFoundError)


async def test_reports_another_merchants_sku_as_not_found(
    stock: EventSourcedStockRepository,
) -> None:
    await receive_stock(receipt(5, merchant_id="merchant-1"), stock)

    with pytest.raises(SkuNotFoundError):
        await get_stock("merchant-2", "sku-1", stock)


async def test_refuses_a_merchant_id_with_a_colon_so_stream_ids_stay_unambiguous(
    store: InMemoryEventStore, stock: EventSourcedStockRepository
) -> None:
    with pytest.raises(InvalidMerchantIdError):
        await receive_stock(receipt(5, merchant_id="acme:x", sku_id="y"), stock)

    with pytest.raises(InvalidMerchantIdError):
        await get_stock("acme:x", "y", stock)
    assert await store.last_position() == 0


async def test_rejects_a_receipt_of_nothing_and_records_nothing(
    store: InMemoryEventStore, stock: EventSourcedStockRepository
) -> None:
    with pytest.raises(InvalidQuantityError):
        await receive_stock(receipt(0), stock)

    assert await store.last_position() == 0


async def test_rejects_a_receipt_for_an_invalid_sku_id_and_records_nothing(
    store: InMemoryEventStore, stock: EventSourcedStockRepository
) -> None:
    with pytest.raises(InvalidSkuIdError):
        await receive_stock(receipt(5, sku_id="red shirt"), stock)

    assert await store.last_position() == 0


async def test_rejects_reading_an_invalid_sku_id(stock: EventSourcedStockRepository) -> None:
    with pytest.raises(InvalidSkuIdError):
        await get_stock("merchant-1", "", stock)


async def test_refuses_to_save_over_stock_that_moved_on(
    stock: EventSourcedStockRepository,
) -> None:
    stale = await stock.load("merchant-1", "sku-1")
    await receive_stock(receipt(5), stock)

    with pytest.raises(ConcurrencyError):
        await stock.save(stale, [StockReceived("sku-1", 1, 1, "")])

    assert (await get_stock("merchant-1", "sku-1", stock)).on_hand == 5


async def test_accumulates_twenty_concurrent_receipts_of_one_sku(
    store: InMemoryEventStore, stock: EventSourcedStockRepository
) -> None:
    quantities = range(1, 21)

    results = await asyncio.gather(*(receive_stock(receipt(q), stock) for q in quantities))

    final = await get_stock("merchant-1", "sku-1", stock)
    assert final.on_hand == sum(quantities)
    assert final.version == len(quantities)
    assert sorted(r.version for r in results) == list(range(1, 21))
    events = await store.read_stream("sku:merchant-1:sku-1")
    assert sorted(events_pb2.StockReceived.FromString(e.payload).quantity for e in events) == list(
        quantities
    )


async def test_retries_concurrent_receipts_that_lose_a_race_until_all_are_recorded() -> None:
    store = InterleavingEventStore()
    stock = EventSourcedStockRepository(store)
    quantities = [3, 5, 7, 11, 13]

    results = await asyncio.gather(*(receive_stock(receipt(q), stock) for q in quantities))

    assert store.conflicts >= len(quantities) - 1
    final = await get_stock("merchant-1", "sku-1", stock)
    assert final.on_hand == sum(quantities)
    assert final.version == len(quantities)
    assert max(r.on_hand for r in results) == sum(quantities)
