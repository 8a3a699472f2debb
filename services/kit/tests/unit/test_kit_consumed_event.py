"""A consumed event: its envelope's id, type and payload, decoded."""

from __future__ import annotations

from uuid import uuid4

import pytest
from google.protobuf.message import DecodeError

from livecommerce.inventory.v1 import events_pb2
from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit.consumer import ConsumedEvent


def consumed(envelope: Envelope) -> ConsumedEvent:
    return ConsumedEvent(envelope=envelope, topic="inventory.events", partition=2, offset=41)


def test_decodes_the_payload_as_the_message_type_asked_for() -> None:
    message = events_pb2.StockReceived(sku_id="sku-1", quantity=4, on_hand_after=9, note="dock")
    event = consumed(
        Envelope(
            event_id=str(uuid4()),
            event_type="livecommerce.inventory.v1.StockReceived",
            payload=message.SerializeToString(),
        )
    )

    decoded = event.payload(events_pb2.StockReceived)

    assert isinstance(decoded, events_pb2.StockReceived)
    assert decoded == message


def test_exposes_the_event_id_as_a_uuid_and_the_event_type() -> None:
    event_id = uuid4()
    event = consumed(Envelope(event_id=str(event_id), event_type="x.v1.Thing"))

    assert event.event_id == event_id
    assert event.event_type == "x.v1.Thing"


def test_decodes_an_empty_payload_as_a_message_with_default_fields() -> None:
    event = consumed(Envelope(event_id=str(uuid4()), event_type="x.v1.Thing"))

    assert event.payload(events_pb2.StockReceived) == events_pb2.StockReceived()


def test_refuses_a_payload_that_is_not_protobuf() -> None:
    event = consumed(Envelope(event_id=str(uuid4()), event_type="x.v1.Thing", payload=b"\xff\xff"))

    with pytest.raises(DecodeError):
        event.payload(events_pb2.StockReceived)
