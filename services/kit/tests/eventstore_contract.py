"""The event-store contract: what every EventStore must do, whatever keeps the events.

Subclass :class:`EventStoreContract` in a test module and provide a ``store`` fixture that
returns a fresh, empty store per test; every test of the contract then runs against it.
The tests use only the :class:`~services.kit.eventstore.EventStore` protocol (``append``,
``read_stream``, ``read_streams``, ``last_event``, ``read_all``, ``last_position``).
Positions are checked relative to the store's ``last_position()`` at the start of a test and
stream ids are unique per test.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from livecommerce.inventory.v1 import events_pb2
from services.kit.context import MessageContext, message_context
from services.kit.errors import ConcurrencyError
from services.kit.eventstore import EventStore, NewEvent, StoredEvent, StreamAppend

MERCHANT = "merchant-contract"
AGGREGATE = "contract-aggregate"


def stream() -> str:
    """A stream id no other test uses."""
    return f"contract:{uuid4().hex}"


def event(label: str = "e", occurred_at: datetime | None = None) -> NewEvent:
    """A small real protobuf event whose payload names it, so tests can tell events apart."""
    return NewEvent.of(
        events_pb2.StockReceived(sku_id=label, quantity=1, on_hand_after=1, note=label),
        occurred_at=occurred_at,
    )


def appending(
    stream_id: str,
    expected_version: int,
    *events: NewEvent,
    merchant_id: str = MERCHANT,
    aggregate_type: str = AGGREGATE,
) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        aggregate_type=aggregate_type,
        merchant_id=merchant_id,
        expected_version=expected_version,
        events=list(events),
    )


def labels(stored: list[StoredEvent]) -> list[str]:
    return [events_pb2.StockReceived.FromString(e.payload).note for e in stored]


class EventStoreContract:
    """Store-agnostic tests; a subclass provides the ``store`` fixture."""

    async def test_appends_to_a_new_stream_expecting_version_zero(self, store: EventStore) -> None:
        sku = stream()
        first = event("first")

        stored = await store.append([appending(sku, 0, first)])

        assert len(stored) == 1
        assert stored[0].stream_id == sku
        assert stored[0].version == 1
        assert stored[0].event_id == first.event_id
        assert stored[0].event_type == "livecommerce.inventory.v1.StockReceived"
        assert stored[0].payload == first.payload
        assert await store.read_stream(sku) == stored

    async def test_numbers_the_versions_of_a_stream_one_to_n_across_appends(
        self, store: EventStore
    ) -> None:
        sku = stream()
        await store.append([appending(sku, 0, event("a"), event("b"))])
        await store.append([appending(sku, 2, event("c"))])
        await store.append([appending(sku, 3, event("d"), event("e"))])

        found = await store.read_stream(sku)

        assert [e.version for e in found] == [1, 2, 3, 4, 5]
        assert labels(found) == ["a", "b", "c", "d", "e"]

    async def test_reads_a_stream_after_a_given_version(self, store: EventStore) -> None:
        sku = stream()
        await store.append([appending(sku, 0, event("a"), event("b"), event("c"))])

        assert labels(await store.read_stream(sku, after_version=1)) == ["b", "c"]
        assert await store.read_stream(sku, after_version=3) == []

    async def test_reads_an_unknown_stream_as_empty(self, store: EventStore) -> None:
        assert await store.read_stream(stream()) == []

    async def test_reads_the_last_event_of_a_stream_and_none_of_an_unknown_one(
        self, store: EventStore
    ) -> None:
        sku, other = stream(), stream()
        await store.append([appending(sku, 0, event("a"), event("b"))])
        await store.append([appending(other, 0, event("x"))])
        await store.append([appending(sku, 2, event("c"))])

        last = await store.last_event(sku)

        assert last is not None
        assert (last.version, labels([last])) == (3, ["c"])
        assert last == (await store.read_stream(sku))[-1]
        assert await store.last_event(stream()) is None

    async def test_reads_several_streams_at_once_each_in_version_order(
        self, store: EventStore
    ) -> None:
        left, right, unknown, untouched = stream(), stream(), stream(), stream()
        await store.append([appending(left, 0, event("left-1"))])
        await store.append([appending(right, 0, event("right-1"), event("right-2"))])
        await store.append([appending(untouched, 0, event("other"))])
        await store.append([appending(left, 1, event("left-2"))])

        found = await store.read_streams([right, unknown, left])

        assert list(found) == [right, unknown, left]
        assert labels(found[left]) == ["left-1", "left-2"]
        assert labels(found[right]) == ["right-1", "right-2"]
        assert found[unknown] == []
        assert found[left] == await store.read_stream(left)
        assert await store.read_streams([]) == {}

    async def test_keeps_streams_apart(self, store: EventStore) -> None:
        left, right = stream(), stream()
        await store.append([appending(left, 0, event("left-1"))])
        await store.append([appending(right, 0, event("right-1"))])
        await store.append([appending(left, 1, event("left-2"))])

        assert labels(await store.read_stream(left)) == ["left-1", "left-2"]
        assert labels(await store.read_stream(right)) == ["right-1"]
        assert [e.version for e in await store.read_stream(right)] == [1]

    async def test_records_the_aggregate_type_and_merchant_of_each_stream(
        self, store: EventStore
    ) -> None:
        sku = stream()
        await store.append(
            [appending(sku, 0, event(), merchant_id="merchant-7", aggregate_type="sku")]
        )

        [found] = await store.read_stream(sku)

        assert found.merchant_id == "merchant-7"
        assert found.aggregate_type == "sku"

    async def test_rejects_a_stale_expected_version_and_changes_nothing(
        self, store: EventStore
    ) -> None:
        sku = stream()
        await store.append([appending(sku, 0, event("a"), event("b"))])
        before = await store.last_position()

        with pytest.raises(ConcurrencyError):
            await store.append([appending(sku, 1, event("late"))])

        assert labels(await store.read_stream(sku)) == ["a", "b"]
        assert await store.last_position() == before

    async def test_rejects_an_expected_version_ahead_of_the_stream_and_changes_nothing(
        self, store: EventStore
    ) -> None:
        sku = stream()
        before = await store.last_position()

        with pytest.raises(ConcurrencyError):
            await store.append([appending(sku, 3, event("early"))])

        assert await store.read_stream(sku) == []
        assert await store.last_position() == before

    async def test_rejects_expecting_a_new_stream_when_it_already_exists(
        self, store: EventStore
    ) -> None:
        sku = stream()
        await store.append([appending(sku, 0, event("a"))])

        with pytest.raises(ConcurrencyError):
            await store.append([appending(sku, 0, event("again"))])

        assert labels(await store.read_stream(sku)) == ["a"]

    async def test_appends_several_streams_in_one_batch(self, store: EventStore) -> None:
        left, right = stream(), stream()
        await store.append([appending(right, 0, event("right-1"))])

        stored = await store.append(
            [appending(left, 0, event("left-1")), appending(right, 1, event("right-2"))]
        )

        assert [(e.stream_id, e.version) for e in stored] == [(left, 1), (right, 2)]
        assert labels(await store.read_stream(left)) == ["left-1"]
        assert labels(await store.read_stream(right)) == ["right-1", "right-2"]

    async def test_appends_nothing_of_a_batch_in_which_one_expectation_is_wrong(
        self, store: EventStore
    ) -> None:
        good, bad = stream(), stream()
        await store.append([appending(bad, 0, event("bad-1"))])
        before = await store.last_position()

        with pytest.raises(ConcurrencyError):
            await store.append(
                [appending(good, 0, event("good-1")), appending(bad, 0, event("bad-2"))]
            )

        assert await store.read_stream(good) == []
        assert labels(await store.read_stream(bad)) == ["bad-1"]
        assert await store.last_position() == before
        assert await store.read_all(before) == []

    async def test_chains_the_versions_of_two_appends_to_one_stream_in_one_batch(
        self, store: EventStore
    ) -> None:
        sku = stream()

        stored = await store.append(
            [appending(sku, 0, event("a"), event("b")), appending(sku, 2, event("c"))]
        )

        assert [e.version for e in stored] == [1, 2, 3]
        assert labels(await store.read_stream(sku)) == ["a", "b", "c"]

    async def test_rejects_a_batch_whose_second_append_ignores_the_first(
        self, store: EventStore
    ) -> None:
        sku = stream()

        with pytest.raises(ConcurrencyError):
            await store.append([appending(sku, 0, event("a")), appending(sku, 0, event("b"))])

        assert await store.read_stream(sku) == []

    async def test_rejects_an_event_id_that_is_already_stored(self, store: EventStore) -> None:
        first, second = stream(), stream()
        once = event("once")
        await store.append([appending(first, 0, once)])

        with pytest.raises(ConcurrencyError):
            await store.append([appending(second, 0, once)])

        assert await store.read_stream(second) == []

    async def test_rejects_a_batch_that_repeats_an_event_id(self, store: EventStore) -> None:
        sku = stream()
        twice = event("twice")
        before = await store.last_position()

        with pytest.raises(ConcurrencyError):
            await store.append([appending(sku, 0, twice, twice)])

        assert await store.read_stream(sku) == []
        assert await store.last_position() == before

    async def test_an_append_of_no_events_stores_nothing(self, store: EventStore) -> None:
        sku = stream()
        before = await store.last_position()

        assert await store.append([appending(sku, 0)]) == []
        assert await store.append([]) == []

        assert await store.read_stream(sku) == []
        assert await store.last_position() == before

    async def test_gives_consecutive_positions_in_append_order(self, store: EventStore) -> None:
        left, right = stream(), stream()
        base = await store.last_position()

        first = await store.append([appending(left, 0, event("l1"), event("l2"))])
        second = await store.append([appending(right, 0, event("r1"))])
        third = await store.append(
            [appending(left, 2, event("l3")), appending(right, 1, event("r2"))]
        )

        positions = [e.position for e in [*first, *second, *third]]
        assert positions == [base + 1, base + 2, base + 3, base + 4, base + 5]
        assert await store.last_position() == base + 5

    async def test_reads_all_events_from_a_position_in_position_order(
        self, store: EventStore
    ) -> None:
        left, right = stream(), stream()
        base = await store.last_position()
        await store.append([appending(left, 0, event("l1"))])
        await store.append([appending(right, 0, event("r1"))])
        await store.append([appending(left, 1, event("l2"))])
        await store.append([appending(right, 1, event("r2"))])

        everything = await store.read_all(base)
        after_two = await store.read_all(base + 2)

        assert labels(everything) == ["l1", "r1", "l2", "r2"]
        assert [e.position for e in everything] == [base + 1, base + 2, base + 3, base + 4]
        assert labels(after_two) == ["l2", "r2"]
        assert await store.read_all(base + 4) == []

    async def test_reads_at_most_limit_events_from_a_position(self, store: EventStore) -> None:
        sku = stream()
        base = await store.last_position()
        await store.append([appending(sku, 0, *(event(f"e{i}") for i in range(1, 8)))])

        page = await store.read_all(base, limit=3)
        next_page = await store.read_all(page[-1].position, limit=3)
        last_page = await store.read_all(next_page[-1].position, limit=3)

        assert labels(page) == ["e1", "e2", "e3"]
        assert labels(next_page) == ["e4", "e5", "e6"]
        assert labels(last_page) == ["e7"]

    async def test_reads_the_same_events_by_stream_and_by_position(self, store: EventStore) -> None:
        sku = stream()
        base = await store.last_position()

        stored = await store.append([appending(sku, 0, event("a"), event("b"))])

        assert await store.read_stream(sku) == stored
        assert await store.read_all(base) == stored

    async def test_stamps_events_with_the_message_context_of_the_append(
        self, store: EventStore
    ) -> None:
        sku = stream()
        context = MessageContext(
            correlation_id="correlation-1",
            causation_id="causation-1",
            trace_context={
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            },
        )

        with message_context(context):
            await store.append([appending(sku, 0, event("a"), event("b"))])

        for found in await store.read_stream(sku):
            assert found.correlation_id == "correlation-1"
            assert found.causation_id == "causation-1"
            assert dict(found.trace_context) == dict(context.trace_context)

    async def test_stamps_a_fresh_correlation_on_an_append_with_no_cause(
        self, store: EventStore
    ) -> None:
        sku = stream()

        await store.append([appending(sku, 0, event("a"))])
        await store.append([appending(sku, 1, event("b"))])

        first, second = await store.read_stream(sku)
        assert first.correlation_id
        assert first.causation_id == first.correlation_id
        assert second.correlation_id != first.correlation_id
        assert dict(first.trace_context) == {}

    async def test_keeps_every_field_of_an_event_through_the_envelope(
        self, store: EventStore
    ) -> None:
        sku = stream()
        occurred_at = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
        original = event("enveloped", occurred_at=occurred_at)
        context = MessageContext(
            "corr-9", "cause-9", {"traceparent": "tp", "tracestate": "ts"}, actor="u-9"
        )
        with message_context(context):
            await store.append(
                [appending(sku, 0, original, merchant_id="merchant-9", aggregate_type="sku")]
            )
        [found] = await store.read_stream(sku)

        envelope = found.to_envelope(producer="inventory")

        assert envelope.event_id == str(original.event_id)
        assert envelope.event_type == "livecommerce.inventory.v1.StockReceived"
        assert envelope.aggregate_type == "sku"
        assert envelope.aggregate_id == sku
        assert envelope.aggregate_version == 1
        assert envelope.position == found.position
        assert envelope.merchant_id == "merchant-9"
        assert envelope.correlation_id == "corr-9"
        assert envelope.causation_id == "cause-9"
        assert dict(envelope.trace_context) == {"traceparent": "tp", "tracestate": "ts"}
        assert envelope.producer == "inventory"
        assert envelope.actor == "u-9"
        assert envelope.payload == original.payload
        assert envelope.occurred_at.ToDatetime(tzinfo=UTC) == occurred_at

    async def test_lets_exactly_one_of_many_concurrent_appends_at_one_version_win(
        self, store: EventStore
    ) -> None:
        sku = stream()
        await store.append([appending(sku, 0, event("seed"))])
        contenders = [event(f"contender-{i}") for i in range(10)]

        results = await asyncio.gather(
            *(store.append([appending(sku, 1, e)]) for e in contenders), return_exceptions=True
        )

        winners = [r for r in results if isinstance(r, list)]
        losers = [r for r in results if isinstance(r, ConcurrencyError)]
        assert len(winners) == 1
        assert len(losers) == len(contenders) - 1
        found = await store.read_stream(sku)
        assert [e.version for e in found] == [1, 2]
        assert found[1].event_id == winners[0][0].event_id

    async def test_gives_gap_free_positions_to_concurrent_appends_of_different_streams(
        self, store: EventStore
    ) -> None:
        base = await store.last_position()

        await asyncio.gather(
            *(store.append([appending(stream(), 0, event(), event())]) for _ in range(10))
        )

        found = await store.read_all(base)
        assert [e.position for e in found] == list(range(base + 1, base + 21))
        assert await store.last_position() == base + 20
