"""Mapping between inventory domain events and their protobuf integration events."""

from __future__ import annotations

from livecommerce.inventory.v1 import events_pb2
from services.inventory.domain.stock import StockEvent, StockReceived
from services.kit.eventstore import NewEvent, StoredEvent

AGGREGATE_SKU = "sku"


def encode(event: StockEvent) -> NewEvent:
    return NewEvent.of(
        events_pb2.StockReceived(
            sku_id=event.sku_id,
            quantity=event.quantity,
            on_hand_after=event.on_hand_after,
            note=event.note,
        )
    )


def decode(stored: StoredEvent) -> StockEvent:
    if stored.event_type == events_pb2.StockReceived.DESCRIPTOR.full_name:
        message = events_pb2.StockReceived.FromString(stored.payload)
        return StockReceived(
            sku_id=message.sku_id,
            quantity=message.quantity,
            on_hand_after=message.on_hand_after,
            note=message.note,
        )
    raise ValueError(f"not an inventory stock event: {stored.event_type}")
