"""Mapping between promotion's domain events and their integration events on the wire.

Every domain event has a protobuf message of the same name in
``livecommerce/promotion/v1/events.proto`` with fields of the same names, so one mapping
serves them all: strings, integers and booleans as they are, a datetime as a Timestamp,
a tuple of strings as a repeated field, ``None`` as an unset optional field. A field the
two do not share is a programming error caught by the unit tests, not at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from livecommerce.promotion.v1 import events_pb2 as pb
from services.kit.eventstore import NewEvent, StoredEvent
from services.kit.wire import moment, timestamp
from services.promotion.domain import campaigns, coupons, group_buys, prices

DOMAIN_EVENTS: tuple[type[Any], ...] = (
    prices.ListPriceSet,
    prices.RoomSpecialPriceSet,
    prices.StoreDiscountSet,
    prices.PricePromotionRemoved,
    coupons.CouponTemplateCreated,
    coupons.CouponTemplateStopped,
    coupons.CouponClaimed,
    coupons.CouponLocked,
    coupons.CouponReleased,
    coupons.CouponRedeemed,
    coupons.CouponRestored,
    campaigns.CampaignScheduled,
    campaigns.CampaignStarted,
    campaigns.CampaignEnded,
    group_buys.GroupOfferCreated,
    group_buys.GroupOpened,
    group_buys.GroupMemberAdded,
    group_buys.GroupOrderPlaced,
    group_buys.GroupJoined,
    group_buys.GroupMemberLeft,
    group_buys.GroupCompleted,
    group_buys.GroupFailed,
    group_buys.GroupPaymentRejected,
)

_MESSAGES: Mapping[type[Any], type[Message]] = {
    event_type: getattr(pb, event_type.__name__) for event_type in DOMAIN_EVENTS
}
_BY_WIRE_NAME: Mapping[str, type[Any]] = {
    message.DESCRIPTOR.full_name: event_type for event_type, message in _MESSAGES.items()
}


def _is_timestamp(field: Any) -> bool:
    return field.message_type is not None and field.message_type.full_name == (
        "google.protobuf.Timestamp"
    )


def to_message(event: object) -> Message:
    message = _MESSAGES[type(event)]()
    fields = message.DESCRIPTOR.fields_by_name
    for field in dataclasses.fields(event):  # type: ignore[arg-type]
        value = getattr(event, field.name)
        descriptor = fields[field.name]
        if value is None:
            continue
        if isinstance(value, datetime):
            getattr(message, field.name).CopyFrom(timestamp(value))
        elif isinstance(value, tuple):
            getattr(message, field.name).extend(value)
        else:
            setattr(message, descriptor.name, value)
    return message


def from_message(message: Message) -> object:
    event_type = _BY_WIRE_NAME[message.DESCRIPTOR.full_name]
    fields = message.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {}
    for field in dataclasses.fields(event_type):
        descriptor = fields[field.name]
        if descriptor.is_repeated:
            values[field.name] = tuple(getattr(message, field.name))
        elif descriptor.has_presence and not message.HasField(field.name):
            values[field.name] = None
        elif _is_timestamp(descriptor):
            values[field.name] = moment(getattr(message, field.name))
        else:
            values[field.name] = getattr(message, field.name)
    return event_type(**values)


def encode(event: object) -> NewEvent:
    return NewEvent.of(to_message(event))


def decode(stored: StoredEvent) -> object:
    event_type = _BY_WIRE_NAME.get(stored.event_type)
    if event_type is None:
        raise ValueError(f"not a promotion event: {stored.event_type}")
    message = _MESSAGES[event_type]()
    message.ParseFromString(stored.payload)
    return from_message(message)
