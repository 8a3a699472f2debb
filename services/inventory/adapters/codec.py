"""Mapping between inventory domain events and their protobuf integration events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from livecommerce.inventory.v1 import events_pb2 as pb
from services.inventory.domain import sale as sale_domain
from services.inventory.domain import stock as stock_domain
from services.kit.eventstore import NewEvent, StoredEvent
from services.kit.wire import moment, timestamp

AGGREGATE_SKU = "sku"
AGGREGATE_SALE = "sale"
AGGREGATE_HOLD = "hold"

DomainEvent = (
    stock_domain.StockEvent
    | sale_domain.SaleEvent
    | sale_domain.HoldEvent
    | sale_domain.SaleSoldOut
)


def _to_proto(event: DomainEvent) -> Message:
    match event:
        case stock_domain.StockReceived():
            return pb.StockReceived(
                sku_id=event.sku_id,
                quantity=event.quantity,
                on_hand_after=event.on_hand_after,
                note=event.note,
            )
        case stock_domain.StockAllocatedToSale():
            return pb.StockAllocatedToSale(
                sku_id=event.sku_id,
                sale_id=event.sale_id,
                quantity=event.quantity,
                on_hand_after=event.on_hand_after,
            )
        case stock_domain.AllocationReturned():
            return pb.AllocationReturned(
                sku_id=event.sku_id,
                sale_id=event.sale_id,
                quantity=event.quantity,
                on_hand_after=event.on_hand_after,
            )
        case sale_domain.FlashSaleScheduled():
            return pb.FlashSaleScheduled(
                sale_id=event.sale_id,
                sku_id=event.sku_id,
                allocated=event.allocated,
                starts_at=timestamp(event.starts_at),
                ends_at=timestamp(event.ends_at),
                per_user_limit=event.per_user_limit,
                hold_ttl_seconds=event.hold_ttl_seconds,
                buckets=event.buckets,
            )
        case sale_domain.FlashSaleEnded():
            return pb.FlashSaleEnded(
                sale_id=event.sale_id, sku_id=event.sku_id, returned=event.returned
            )
        case sale_domain.SaleSoldOut():
            return pb.SaleSoldOut(
                sale_id=event.sale_id, sku_id=event.sku_id, sequence=event.sequence
            )
        case sale_domain.StockReserved():
            return pb.StockReserved(
                hold_id=event.hold_id,
                sale_id=event.sale_id,
                sku_id=event.sku_id,
                user_id=event.user_id,
                quantity=event.quantity,
                expires_at=timestamp(event.expires_at),
                bucket=event.bucket,
                home_bucket=event.home_bucket,
                epoch=event.epoch,
            )
        case sale_domain.ReservationConfirmed():
            return pb.ReservationConfirmed(
                hold_id=event.hold_id,
                sale_id=event.sale_id,
                sku_id=event.sku_id,
                quantity=event.quantity,
            )
        case sale_domain.ReservationReleased():
            return pb.ReservationReleased(
                hold_id=event.hold_id,
                sale_id=event.sale_id,
                sku_id=event.sku_id,
                quantity=event.quantity,
                reason=event.reason.value,
                returned_to_sku=event.returned_to_sku,
            )
    raise TypeError(f"not an inventory event: {event!r}")


def encode(event: DomainEvent) -> NewEvent:
    return NewEvent.of(_to_proto(event))


def _decoder(
    message_type: type[Message], build: Callable[[Any], DomainEvent]
) -> tuple[str, Callable[[bytes], DomainEvent]]:
    return message_type.DESCRIPTOR.full_name, lambda payload: build(
        message_type.FromString(payload)
    )


_DECODERS: dict[str, Callable[[bytes], DomainEvent]] = dict(
    [
        _decoder(
            pb.StockReceived,
            lambda m: stock_domain.StockReceived(m.sku_id, m.quantity, m.on_hand_after, m.note),
        ),
        _decoder(
            pb.StockAllocatedToSale,
            lambda m: stock_domain.StockAllocatedToSale(
                m.sku_id, m.sale_id, m.quantity, m.on_hand_after
            ),
        ),
        _decoder(
            pb.AllocationReturned,
            lambda m: stock_domain.AllocationReturned(
                m.sku_id, m.sale_id, m.quantity, m.on_hand_after
            ),
        ),
        _decoder(
            pb.FlashSaleScheduled,
            lambda m: sale_domain.FlashSaleScheduled(
                sale_id=m.sale_id,
                sku_id=m.sku_id,
                allocated=m.allocated,
                starts_at=moment(m.starts_at),
                ends_at=moment(m.ends_at),
                per_user_limit=m.per_user_limit,
                hold_ttl_seconds=m.hold_ttl_seconds,
                buckets=m.buckets,
            ),
        ),
        _decoder(
            pb.FlashSaleEnded,
            lambda m: sale_domain.FlashSaleEnded(m.sale_id, m.sku_id, m.returned),
        ),
        _decoder(
            pb.SaleSoldOut,
            lambda m: sale_domain.SaleSoldOut(m.sale_id, m.sku_id, m.sequence),
        ),
        _decoder(
            pb.StockReserved,
            lambda m: sale_domain.StockReserved(
                hold_id=m.hold_id,
                sale_id=m.sale_id,
                sku_id=m.sku_id,
                user_id=m.user_id,
                quantity=m.quantity,
                expires_at=moment(m.expires_at),
                bucket=m.bucket,
                home_bucket=m.home_bucket,
                epoch=m.epoch,
            ),
        ),
        _decoder(
            pb.ReservationConfirmed,
            lambda m: sale_domain.ReservationConfirmed(m.hold_id, m.sale_id, m.sku_id, m.quantity),
        ),
        _decoder(
            pb.ReservationReleased,
            lambda m: sale_domain.ReservationReleased(
                m.hold_id,
                m.sale_id,
                m.sku_id,
                m.quantity,
                sale_domain.ReleaseReason(m.reason),
                m.returned_to_sku,
            ),
        ),
    ]
)


def decode(stored: StoredEvent) -> DomainEvent:
    decoder = _DECODERS.get(stored.event_type)
    if decoder is None:
        raise ValueError(f"not an inventory event: {stored.event_type}")
    return decoder(stored.payload)
