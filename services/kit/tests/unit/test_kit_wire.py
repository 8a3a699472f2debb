from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.kit.wire import moment, timestamp

MOMENTS = [
    datetime(2026, 11, 22, 22, 41, 37, 123456, tzinfo=UTC),
    datetime(2026, 11, 23, 6, 41, 37, 999999, tzinfo=timezone(timedelta(hours=8))),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 22, 22, 41, 37, 1),
]


@pytest.mark.parametrize("value", MOMENTS, ids=str)
def test_a_timestamp_is_the_one_protobuf_computes_for_the_same_moment(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)

    assert timestamp(value) == expected


@pytest.mark.parametrize("value", MOMENTS[:5], ids=str)
def test_an_aware_moment_survives_the_round_trip_through_a_timestamp(value: datetime) -> None:
    assert moment(timestamp(value)) == value
