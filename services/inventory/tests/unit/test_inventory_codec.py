"""Inventory domain events to protobuf integration events and back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from livecommerce.inventory.v1 import events_pb2
from services.inventory.adapters import codec
from services.inventory.domain.stock import StockReceived
from services.kit.eventstore import NewEvent, StoredEvent


def stored(new: NewEvent) -> StoredEvent:
    return StoredEvent(
        position=1,
        stream_id="sku:merchant-1:sku-1",
        version=1,
        event_id=new.event_id,
        event_type=new.event_type,
        aggregate_type=codec.AGGREGATE_SKU,
        merchant_id="merchant-1",
        occurred_at=new.occurred_at,
        correlation_id="c",
        causation_id="c",
        trace_context={},
        payload=new.payload,
    )


def test_encodes_stock_received_as_its_protobuf_event() -> None:
    new = codec.encode(StockReceived("sku-1", 3, 8, "dock 4"))

    assert new.event_type == "livecommerce.inventory.v1.StockReceived"
    assert events_pb2.StockReceived.FromString(new.payload) == events_pb2.StockReceived(
        sku_id="sku-1", quantity=3, on_hand_after=8, note="dock 4"
    )


@pytest.mark.parametrize(
    "event",
    [
        StockReceived("sku-1", 3, 8, "dock 4"),
        StockReceived("ÄÖÜ-42", 10_000_000, 10_000_000, ""),
        StockReceived("sku-2", 1, 2**40, "ü" * 200),
    ],
)
def test_decodes_what_it_encodes(event: StockReceived) -> None:
    assert codec.decode(stored(codec.encode(event))) == event


def test_refuses_to_decode_an_event_that_is_not_an_inventory_stock_event() -> None:
    foreign = NewEvent(
        event_type="livecommerce.orders.v1.OrderPlaced",
        payload=b"",
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
    )

    with pytest.raises(ValueError, match="OrderPlaced"):
        codec.decode(stored(foreign))
