"""The stream processor's one job: fold a batch of envelopes into the derived state, each
event exactly once.

A batch is one transaction: its events' ids go into the inbox first, and only the events
not seen before are applied; each room's counters are read (row locked) once, folded
through every fact of the batch in order, and written back once. A redelivered event (a
restart before the broker got the offset, a replay from the start) finds its inbox row and
changes nothing. If a batch fails, its events are applied one by one, so one bad event is
set aside (``rejected_events``) without holding back the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from uuid import UUID

from google.protobuf.message import DecodeError

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.analytics.application.ports import ProjectionStore, ProjectionWriter
from services.analytics.domain import counters as c
from services.analytics.domain import facts as f
from services.analytics.domain.review import marker_of
from services.kit.logging import get_logger

log = get_logger(__name__)

Decode = Callable[[Envelope], f.Fact | None]


@dataclass
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    rooms: set[tuple[str, str]] = field(default_factory=set)
    """(merchant, room) whose counters changed: their live gauges need refreshing."""

    def add(self, other: BatchOutcome) -> None:
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.ignored += other.ignored
        self.rejected += other.rejected
        self.rooms |= other.rooms


class _Rooms:
    """The counters of the rooms a batch touches, read once and written once."""

    def __init__(self, writer: ProjectionWriter) -> None:
        self._writer = writer
        self._counters: dict[tuple[str, str], c.RoomCounters] = {}
        self._applied: dict[tuple[str, str], int] = {}

    async def fold(
        self, merchant_id: str, room_id: str, step: Callable[[c.RoomCounters], c.RoomCounters]
    ) -> None:
        key = (merchant_id, room_id)
        if key not in self._counters:
            self._counters[key] = await self._writer.counters(merchant_id, room_id)
        self._counters[key] = step(self._counters[key])
        self._applied[key] = self._applied.get(key, 0) + 1

    def touch(self, merchant_id: str, room_id: str) -> Awaitable[None]:
        return self.fold(merchant_id, room_id, lambda counters: counters)

    async def save(self) -> set[tuple[str, str]]:
        for (merchant_id, room_id), counters in self._counters.items():
            await self._writer.save_counters(
                merchant_id, room_id, counters, self._applied[(merchant_id, room_id)]
            )
        return set(self._counters)


async def apply_fact(fact: f.Fact, w: ProjectionWriter, rooms: _Rooms) -> None:
    """Write one fact's rows and fold it into its room's counters."""
    match fact:
        case f.RoomScheduled():
            await w.room_scheduled(fact)
            await rooms.touch(fact.merchant_id, fact.room_id)
        case f.RoomStarted():
            await w.room_started(fact)
            await rooms.touch(fact.merchant_id, fact.room_id)
        case f.RoomEnded():
            await w.room_ended(fact)
            await rooms.touch(fact.merchant_id, fact.room_id)
        case f.ViewerJoined():
            if await w.open_visit(fact):
                await w.add_presence(fact.merchant_id, fact.room_id, fact.at, +1)
                first = await w.add_viewer(fact.merchant_id, fact.room_id, fact.viewer_id)
                await rooms.fold(
                    fact.merchant_id,
                    fact.room_id,
                    lambda x: c.count_visit(x, fact, first_in_room=first),
                )
        case f.ViewerLeft():
            if await w.close_visit(fact):
                await w.add_presence(fact.merchant_id, fact.room_id, fact.at, -1)
                await rooms.touch(fact.merchant_id, fact.room_id)
        case f.CommentPosted():
            await rooms.fold(fact.merchant_id, fact.room_id, lambda x: c.count_comment(x, fact))
        case f.ReminderSent() | f.ReminderSubscribed():
            first = await w.add_subscriber(fact)
            await rooms.fold(
                fact.merchant_id,
                fact.room_id,
                lambda x: c.count_subscriber(x, fact, first_in_room=first),
            )
        case f.ProductPinned():
            await w.pin(fact)
            await w.add_marker(fact.merchant_id, fact.room_id, marker_of(fact))
            await rooms.fold(fact.merchant_id, fact.room_id, lambda x: c.count_pin(x, fact))
        case f.ProductUnpinned():
            await w.unpin(fact)
        case f.DrawHeld() | f.FlashSaleStarted() | f.CouponDropped():
            await w.add_marker(fact.merchant_id, fact.room_id, marker_of(fact))
            await rooms.touch(fact.merchant_id, fact.room_id)
        case f.OrderPlaced():
            await w.record_order(fact)
            await rooms.fold(
                fact.merchant_id, fact.room_id, lambda x: c.count_order_placed(x, fact)
            )
        case f.OrderPaid():
            await _paid(fact, w, rooms)
        case f.OrderCancelled():
            await w.order_cancelled(fact)
            await _into_order_room(fact, w, rooms, lambda x: c.count_cancellation(x, fact))
        case f.OrderRefunded():
            await w.order_refunded(fact)
            await _into_order_room(fact, w, rooms, lambda x: c.count_refund(x, fact))
        case f.StockLevel():
            await w.stock_level(fact)
        case f.SaleScheduled() | f.SaleReserved() | f.SaleReleased() | f.SaleEnded():
            await w.sale(fact)
        case f.CampaignScheduled():
            await w.campaign(fact)
        case f.ViewAttributed() | f.InviteeBound() | f.OrderAttributed():
            await w.attribution(fact)
        case f.CategoriesConfigured():
            await w.categories(fact)


async def _into_order_room(
    fact: f.OrderCancelled | f.OrderRefunded,
    w: ProjectionWriter,
    rooms: _Rooms,
    step: Callable[[c.RoomCounters], c.RoomCounters],
) -> None:
    """Fold a later step of an order into the room it was placed in (its own message may
    not name the room)."""
    placed = await w.recorded_order(fact.merchant_id, fact.order_id)
    if placed is not None:
        await rooms.fold(fact.merchant_id, placed.room_id, step)


async def _paid(fact: f.OrderPaid, w: ProjectionWriter, rooms: _Rooms) -> None:
    placed = await w.recorded_order(fact.merchant_id, fact.order_id)
    if placed is None:
        log.warning("payment of an order never placed", order_id=fact.order_id)
        return
    if not await w.order_paid(fact):
        return
    paid = replace(fact, room_id=placed.room_id, channel=placed.channel, lines=placed.lines)
    await rooms.fold(fact.merchant_id, placed.room_id, lambda x: c.count_order_paid(x, paid))


@dataclass(frozen=True)
class _Decoded:
    event_id: UUID
    envelope: Envelope


class Processor:
    def __init__(self, store: ProjectionStore, decode: Decode) -> None:
        self._store = store
        self._decode = decode

    async def apply(self, raw: Sequence[bytes]) -> BatchOutcome:
        """Apply a batch of serialized envelopes, as read from the topics, in order."""
        outcome = BatchOutcome()
        decoded: list[_Decoded] = []
        for value in raw:
            envelope = Envelope()
            try:
                envelope.ParseFromString(value)
                event_id = UUID(envelope.event_id)
            except (DecodeError, ValueError) as error:
                log.warning("undecodable envelope skipped", error=str(error))
                outcome.rejected += 1
                continue
            decoded.append(_Decoded(event_id, envelope))
        try:
            outcome.add(await self._apply_together(decoded))
        except Exception as error:
            log.warning("batch failed; applying its events one by one", error=repr(error))
            for one in decoded:
                outcome.add(await self._apply_alone(one))
        return outcome

    async def _apply_together(self, batch: Sequence[_Decoded]) -> BatchOutcome:
        outcome = BatchOutcome()
        async with self._store.transaction() as writer:
            fresh = await writer.claim([d.event_id for d in batch])
            rooms = _Rooms(writer)
            for item in batch:
                if item.event_id not in fresh:
                    outcome.duplicates += 1
                    continue
                fresh.discard(item.event_id)
                fact = self._decode(item.envelope)
                if fact is None:
                    outcome.ignored += 1
                    continue
                await apply_fact(fact, writer, rooms)
                outcome.applied += 1
            outcome.rooms = await rooms.save()
        return outcome

    async def _apply_alone(self, item: _Decoded) -> BatchOutcome:
        try:
            return await self._apply_together([item])
        except Exception as error:
            log.error(
                "event rejected",
                event_id=item.envelope.event_id,
                event_type=item.envelope.event_type,
                exc_info=error,
            )
            async with self._store.transaction() as writer:
                await writer.reject(
                    item.event_id,
                    item.envelope.event_type,
                    f"{type(error).__name__}: {error}",
                    item.envelope.SerializeToString(),
                )
            return BatchOutcome(rejected=1)
