"""Building events to append, and retrying an operation that lost a concurrency race."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from livecommerce.inventory.v1 import events_pb2
from services.kit.errors import ConcurrencyError, NotFoundError
from services.kit.eventstore import NewEvent, retry_on_conflict


def test_names_a_new_event_after_its_protobuf_message_and_serializes_it() -> None:
    message = events_pb2.StockReceived(sku_id="sku-1", quantity=3, on_hand_after=5, note="n")

    new = NewEvent.of(message)

    assert new.event_type == "livecommerce.inventory.v1.StockReceived"
    assert events_pb2.StockReceived.FromString(new.payload) == message


def test_stamps_a_new_event_with_the_current_utc_time_unless_told_otherwise() -> None:
    message = events_pb2.StockReceived(sku_id="sku-1")
    before = datetime.now(UTC)

    now = NewEvent.of(message)
    then = NewEvent.of(message, occurred_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))

    assert before <= now.occurred_at <= datetime.now(UTC)
    assert now.occurred_at.utcoffset() == timedelta(0)
    assert then.occurred_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_gives_every_new_event_its_own_id() -> None:
    message = events_pb2.StockReceived(sku_id="sku-1")

    assert NewEvent.of(message).event_id != NewEvent.of(message).event_id


async def test_retries_an_operation_that_conflicts_twice_then_succeeds() -> None:
    calls = 0

    async def operation() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConcurrencyError("stream moved on")
        return "done"

    assert await retry_on_conflict(operation) == "done"
    assert calls == 3


async def test_does_not_retry_an_error_that_is_not_a_conflict() -> None:
    calls = 0

    async def operation() -> str:
        nonlocal calls
        calls += 1
        raise NotFoundError("no such order")

    with pytest.raises(NotFoundError):
        await retry_on_conflict(operation)
    assert calls == 1


async def test_gives_up_after_the_allowed_attempts_and_raises_the_conflict() -> None:
    calls = 0

    async def operation() -> str:
        nonlocal calls
        calls += 1
        raise ConcurrencyError(f"conflict {calls}")

    with pytest.raises(ConcurrencyError, match="conflict 3"):
        await retry_on_conflict(operation, attempts=3)
    assert calls == 3


async def test_runs_an_operation_that_succeeds_at_once_only_once() -> None:
    calls = 0

    async def operation() -> int:
        nonlocal calls
        calls += 1
        return 0

    assert await retry_on_conflict(operation) == 0
    assert calls == 1


async def test_returns_none_from_a_successful_operation_that_returns_none() -> None:
    appended: list[str] = []

    async def operation() -> str | None:
        appended.append("event")
        return None

    result = await retry_on_conflict(operation)

    assert result is None
    assert appended == ["event"]
