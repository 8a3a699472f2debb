"""Small conversions every service needs between Python values and protobuf wire types."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(moment: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def moment(stamp: Timestamp) -> datetime:
    """The aware UTC datetime of a protobuf Timestamp."""
    return stamp.ToDatetime(tzinfo=UTC)
