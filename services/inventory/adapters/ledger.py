"""The durable side of flash sales: events plus the sale and hold tables they imply, written
in one transaction, under the sale row's lock.

Every writer of a sale's holds (the reservation group commit, confirm, release, the
sweeper, closing, rebuilding Redis) locks the sale's ``flash_sales`` row first. That
serialises them per sale, so the counters and the sale stream's version are exact, and a
rebuild of Redis (which bumps the sale's ``epoch``) cannot interleave with a batch of holds
decided against the Redis state it replaces: such holds carry the old epoch and are refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from uuid import UUID

import asyncpg

from services.inventory.adapters import codec
from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.application.ports import DurableHold, PendingHold, StaleEpochError
from services.inventory.domain.sale import (
    FlashSale,
    FlashSaleScheduled,
    Hold,
    HoldConflictError,
    HoldEvent,
    HoldState,
    ReservationConfirmed,
    ReservationReleased,
    SaleNotFoundError,
    SaleSoldOut,
    StockReserved,
)
from services.inventory.domain.stock import (
    AllocationReturned,
    SkuStock,
    StockAllocatedToSale,
)
from services.kit.context import MessageContext
from services.kit.db import Connection, KeptConnections
from services.kit.eventstore import PostgresEventStore, StoredEvent, StreamAppend
from services.kit.timers import schedule_timer

SALE_END_TIMER = "inventory-sale-end"
_HOLD_EVENTS = (StockReserved, ReservationConfirmed, ReservationReleased)


@dataclass(frozen=True)
class SaleCounters:
    allocated: int
    held: int
    sold: int
    returned: int
    epoch: int
    ended: bool
    sale_version: int
    soldout_seq: int

    @property
    def available(self) -> int:
        return self.allocated - self.held - self.sold - self.returned


_SALE_COLUMNS = """merchant_id, sale_id, sku_id, allocated, held, sold, returned, starts_at,
    ends_at, per_user_limit, hold_ttl_seconds, buckets, ended, epoch, sale_version, soldout_seq"""


def _sale_of(row: asyncpg.Record) -> FlashSale:
    return FlashSale(
        merchant_id=row["merchant_id"],
        sale_id=row["sale_id"],
        sku_id=row["sku_id"],
        allocated=row["allocated"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        per_user_limit=row["per_user_limit"],
        hold_ttl_seconds=row["hold_ttl_seconds"],
        buckets=row["buckets"],
        ended=row["ended"],
        version=row["sale_version"],
    )


def _counters_of(row: asyncpg.Record) -> SaleCounters:
    return SaleCounters(
        allocated=row["allocated"],
        held=row["held"],
        sold=row["sold"],
        returned=row["returned"],
        epoch=row["epoch"],
        ended=row["ended"],
        sale_version=row["sale_version"],
        soldout_seq=row["soldout_seq"],
    )


def _append(
    stream_id: str,
    kind: str,
    merchant: str,
    version: int,
    events: Sequence[codec.DomainEvent],
    context: MessageContext | None = None,
) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        aggregate_type=kind,
        merchant_id=merchant,
        expected_version=version,
        events=[codec.encode(e) for e in events],
        context=context,
    )


_RECORD_HOLDS = """
WITH locked AS (
    SELECT merchant_id, sale_id, sku_id, allocated, held, sold, returned, epoch, sale_version,
           soldout_seq
    FROM flash_sales
    WHERE (merchant_id, sale_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
    ORDER BY merchant_id, sale_id FOR UPDATE
), inserted AS (
    INSERT INTO flash_holds (merchant_id, hold_id, sale_id, user_id, quantity, state,
                             expires_at, bucket, home_bucket, epoch)
    SELECT h.m, h.h, h.s, h.u, h.q, 'held', h.x, h.b, h.hb, h.e
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                $8::timestamptz[], $9::int[], $10::int[], $11::bigint[])
         WITH ORDINALITY AS h(m, h, s, u, q, x, b, hb, e, ord)
    JOIN locked ON locked.merchant_id = h.m AND locked.sale_id = h.s AND locked.epoch = h.e
    ORDER BY h.ord
    ON CONFLICT (merchant_id, hold_id) DO NOTHING
    RETURNING merchant_id, hold_id, sale_id, quantity
), grown AS (
    SELECT locked.merchant_id, locked.sale_id, locked.held + n.quantity AS held,
           (locked.allocated - locked.held - locked.sold - locked.returned > 0
            AND locked.allocated - locked.held - n.quantity - locked.sold - locked.returned = 0
           )::int AS sold_out
    FROM locked
    JOIN (SELECT merchant_id, sale_id, sum(quantity) AS quantity FROM inserted
          GROUP BY merchant_id, sale_id) AS n
      ON n.merchant_id = locked.merchant_id AND n.sale_id = locked.sale_id
), counted AS (
    UPDATE flash_sales AS f
    SET held = grown.held, soldout_seq = f.soldout_seq + grown.sold_out,
        sale_version = f.sale_version + grown.sold_out
    FROM grown
    WHERE f.merchant_id = grown.merchant_id AND f.sale_id = grown.sale_id
    RETURNING f.merchant_id, f.sale_id, f.soldout_seq
)
SELECT locked.*, counted.soldout_seq AS soldout_seq_after,
       ARRAY(SELECT inserted.hold_id FROM inserted
             WHERE inserted.merchant_id = locked.merchant_id
               AND inserted.sale_id = locked.sale_id) AS inserted
FROM locked
LEFT JOIN counted ON counted.merchant_id = locked.merchant_id
                 AND counted.sale_id = locked.sale_id
"""
"""A reservation group commit's holds in one round trip: lock the sales (in key order),
insert the holds Redis decided at the sale's current epoch (inserting is also the check that
a hold id is new), grow each sale's held count by the units inserted, and count a sale sold
out (its ``soldout_seq`` and stream version up by one) when that takes its last units. Per
sale locked: its counters before, ``soldout_seq_after`` (NULL when nothing was inserted)
and the hold ids inserted. The sale row's lock is what orders two group commits of one
sale; the ``no_oversell`` check refuses the statement if a count would ever go too far."""


class SaleLedger:
    def __init__(
        self, pool: asyncpg.Pool, store: PostgresEventStore, *, group_commits: int = 2
    ) -> None:
        """``group_commits``: how many reservation batches may be recorded at once (each on
        a connection of its own; the sale's row lock orders them in the database)."""
        self._pool = pool
        self.store = store
        self.skus = EventSourcedStockRepository(store)
        self._committers = KeptConnections(pool, group_commits)

    @property
    def group_commits(self) -> int:
        return self._committers.count

    async def close(self) -> None:
        await self._committers.close()

    async def sale(self, merchant_id: str, sale_id: str) -> tuple[FlashSale, SaleCounters]:
        row = await self._pool.fetchrow(
            f"SELECT {_SALE_COLUMNS} FROM flash_sales WHERE merchant_id = $1 AND sale_id = $2",  # noqa: S608
            merchant_id,
            sale_id,
        )
        if row is None:
            raise SaleNotFoundError(f"sale {sale_id} not found")
        return _sale_of(row), _counters_of(row)

    async def live_sales(self) -> list[FlashSale]:
        """Sales that may still hold units: not ended, or ended with holds outstanding or
        with units granted in Redis to holds that never became durable."""
        rows = await self._pool.fetch(
            f"SELECT {_SALE_COLUMNS} FROM flash_sales"  # noqa: S608
            " WHERE NOT ended OR held > 0 OR allocated > held + sold + returned"
        )
        return [_sale_of(r) for r in rows]

    async def hold(self, merchant_id: str, hold_id: str, *, conn: Connection | None = None) -> Hold:
        """``conn``: read in the caller's transaction (see ``EventStore.read_stream``)."""
        stored = await self.store.read_stream(Hold.stream_id(merchant_id, hold_id), conn=conn)
        return _hold_of(merchant_id, hold_id, stored)

    async def holds(
        self, merchant_id: str, hold_ids: Sequence[str], *, conn: Connection | None = None
    ) -> list[Hold]:
        """Many holds in one read, in the order asked (``conn`` as for :meth:`hold`)."""
        streams = [Hold.stream_id(merchant_id, hold_id) for hold_id in hold_ids]
        stored = await self.store.read_streams(streams, conn=conn)
        return [
            _hold_of(merchant_id, hold_id, stored[stream])
            for hold_id, stream in zip(hold_ids, streams, strict=True)
        ]

    async def recorded_holds(self, merchant_id: str, hold_ids: Sequence[str]) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT hold_id FROM flash_holds WHERE merchant_id = $1 AND hold_id = ANY($2::text[])",
            merchant_id,
            list(hold_ids),
        )
        return {row["hold_id"] for row in rows}

    async def sku(
        self, merchant_id: str, sku_id: str, *, conn: Connection | None = None
    ) -> SkuStock:
        return await self.skus.load(merchant_id, sku_id, conn=conn)

    async def schedule(
        self, sku: SkuStock, allocated: StockAllocatedToSale, scheduled: FlashSaleScheduled
    ) -> None:
        """The SKU gives units to a new sale: both streams, the sale row, the end timer."""
        merchant = sku.merchant_id
        async with self._pool.acquire() as conn, conn.transaction():
            await self.store.append(
                [
                    _append(
                        SkuStock.stream_id(merchant, sku.sku_id),
                        codec.AGGREGATE_SKU,
                        merchant,
                        sku.version,
                        [allocated],
                    ),
                    _append(
                        FlashSale.stream_id(merchant, scheduled.sale_id),
                        codec.AGGREGATE_SALE,
                        merchant,
                        0,
                        [scheduled],
                    ),
                ],
                conn=conn,
            )
            await conn.execute(
                "INSERT INTO flash_sales (merchant_id, sale_id, sku_id, allocated, starts_at,"
                " ends_at, per_user_limit, hold_ttl_seconds, buckets, sale_version)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)",
                merchant,
                scheduled.sale_id,
                scheduled.sku_id,
                scheduled.allocated,
                scheduled.starts_at,
                scheduled.ends_at,
                scheduled.per_user_limit,
                scheduled.hold_ttl_seconds,
                scheduled.buckets,
            )
            await schedule_timer(
                conn,
                kind=SALE_END_TIMER,
                key=f"{merchant}:{scheduled.sale_id}",
                due_at=scheduled.ends_at,
                merchant_id=merchant,
                payload={"sale_id": scheduled.sale_id},
            )

    async def record_reservations(
        self, pending: Sequence[PendingHold]
    ) -> list[BaseException | None]:
        """Group commit: many holds, one transaction of few round trips. Per hold: None
        when durable, or the reason it was refused (stale epoch, hold id taken, no sale)."""
        # A COMMIT that lost the database raises unless the batch was recorded after all.
        return await self.store.settled_batch(
            self._committers.use(), pending, self._record_reservations
        )

    async def _record_reservations(
        self, conn: Connection, pending: Sequence[PendingHold], results: list[BaseException | None]
    ) -> list[UUID]:
        """The batch's statements in the caller's transaction: ``results`` gets each refusal;
        returns the ids of the events appended."""
        offered: list[PendingHold] = []
        taken: set[tuple[str, str]] = set()
        for index, item in enumerate(pending):
            hold_key = (item.merchant_id, item.event.hold_id)
            if hold_key in taken:  # one hold id twice in a batch: the first one counts
                results[index] = HoldConflictError(f"hold {item.event.hold_id} already exists")
            else:
                offered.append(item)
                taken.add(hold_key)
        keys = sorted({(p.merchant_id, p.event.sale_id) for p in offered})
        rows = await conn.fetch(
            _RECORD_HOLDS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [p.merchant_id for p in offered],
            [p.event.hold_id for p in offered],
            [p.event.sale_id for p in offered],
            [p.event.user_id for p in offered],
            [p.event.quantity for p in offered],
            [p.event.expires_at for p in offered],
            [p.event.bucket for p in offered],
            [p.event.home_bucket for p in offered],
            [p.event.epoch for p in offered],
        )
        sales = {(r["merchant_id"], r["sale_id"]): r for r in rows}
        inserted = {(r["merchant_id"], hold_id) for r in rows for hold_id in r["inserted"]}
        accepted: list[PendingHold] = []
        for index, item in enumerate(pending):
            if results[index] is not None:
                continue
            sale = sales.get((item.merchant_id, item.event.sale_id))
            if sale is None:
                results[index] = SaleNotFoundError(f"sale {item.event.sale_id} not found")
            elif sale["epoch"] != item.event.epoch:
                results[index] = StaleEpochError("the sale's stock was rebuilt; retry")
            elif (item.merchant_id, item.event.hold_id) not in inserted:
                results[index] = HoldConflictError(f"hold {item.event.hold_id} already exists")
            else:
                accepted.append(item)
        appends = [
            _append(
                Hold.stream_id(p.merchant_id, p.event.hold_id),
                codec.AGGREGATE_HOLD,
                p.merchant_id,
                0,
                [p.event],
                context=p.context,
            )
            for p in accepted
        ]
        for (merchant, sale_id), row in sales.items():
            sequence = row["soldout_seq_after"]
            if sequence is not None and sequence > row["soldout_seq"]:  # its last units went
                appends.append(
                    _append(
                        FlashSale.stream_id(merchant, sale_id),
                        codec.AGGREGATE_SALE,
                        merchant,
                        row["sale_version"],
                        [SaleSoldOut(sale_id, row["sku_id"], sequence)],
                    )
                )
        return await self.store.append_ids(appends, conn=conn)

    async def sale_as_of_now(
        self, merchant_id: str, sale_id: str
    ) -> tuple[FlashSale, SaleCounters, list[DurableHold]] | None:
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            row = await _sale_row(conn, merchant_id, sale_id, lock=False)
            if row is None:
                return None
            holds = await _durable_holds(conn, merchant_id, sale_id)
        return _sale_of(row), _counters_of(row), holds

    @asynccontextmanager
    async def locked_sale(self, merchant_id: str, sale_id: str) -> AsyncIterator[SaleTransaction]:
        """A transaction holding the sale's row lock: every non-batch writer goes through it."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await _sale_row(conn, merchant_id, sale_id, lock=True)
            if row is None:
                raise SaleNotFoundError(f"sale {sale_id} not found")
            transaction = SaleTransaction(self, conn, _sale_of(row), _counters_of(row))
            yield transaction
            await transaction.flush()


def _hold_of(merchant_id: str, hold_id: str, stored: Sequence[StoredEvent]) -> Hold:
    events = [codec.decode(e) for e in stored]
    return Hold.replay(merchant_id, hold_id, [e for e in events if isinstance(e, _HOLD_EVENTS)])


async def _sale_row(
    conn: Connection, merchant_id: str, sale_id: str, *, lock: bool
) -> asyncpg.Record | None:
    """The sale's row; ``lock``: FOR UPDATE (the row lock every writer of the sale takes)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_SALE_COLUMNS} FROM flash_sales"  # noqa: S608
        " WHERE merchant_id = $1 AND sale_id = $2" + (" FOR UPDATE" if lock else ""),
        merchant_id,
        sale_id,
    )
    return row


async def _durable_holds(conn: Connection, merchant_id: str, sale_id: str) -> list[DurableHold]:
    rows = await conn.fetch(
        "SELECT hold_id, user_id, quantity, state, expires_at, bucket, home_bucket"
        " FROM flash_holds WHERE merchant_id = $1 AND sale_id = $2",
        merchant_id,
        sale_id,
    )
    return [DurableHold(**dict(r)) for r in rows]


async def _save_counters(
    conn: Connection, merchant: str, sale_id: str, counters: SaleCounters
) -> None:
    await conn.execute(
        "UPDATE flash_sales SET held = $3, sold = $4, returned = $5, ended = $6, epoch = $7,"
        " sale_version = $8, soldout_seq = $9 WHERE merchant_id = $1 AND sale_id = $2",
        merchant,
        sale_id,
        counters.held,
        counters.sold,
        counters.returned,
        counters.ended,
        counters.epoch,
        counters.sale_version,
        counters.soldout_seq,
    )


class SaleTransaction:
    """What may be done to a sale while its row is locked; written at once at the end."""

    def __init__(
        self, ledger: SaleLedger, conn: Connection, sale: FlashSale, counters: SaleCounters
    ) -> None:
        self._ledger = ledger
        self._conn = conn
        self.sale = sale
        self.counters = counters
        self._appends: list[StreamAppend] = []
        self._hold_states: list[tuple[str, str]] = []
        self._sku: SkuStock | None = None
        self._sku_events: list[AllocationReturned] = []

    async def hold(self, hold_id: str) -> Hold:
        # Through the locked connection: waiting on the pool while holding the sale's lock
        # starved it when every pooled connection was waiting on that lock (a burst of
        # payments confirming holds of one sale timed out that way).
        return await self._ledger.hold(self.sale.merchant_id, hold_id, conn=self._conn)

    async def holds(self, hold_ids: Sequence[str]) -> list[Hold]:
        return await self._ledger.holds(self.sale.merchant_id, hold_ids, conn=self._conn)

    async def durable_holds(self) -> list[DurableHold]:
        return await _durable_holds(self._conn, self.sale.merchant_id, self.sale.sale_id)

    def bump_epoch(self) -> int:
        self.counters = replace(self.counters, epoch=self.counters.epoch + 1)
        return self.counters.epoch

    def confirm(self, hold: Hold, event: ReservationConfirmed) -> None:
        self._hold_event(hold, event, "confirmed")
        self.counters = replace(
            self.counters,
            held=self.counters.held - hold.quantity,
            sold=self.counters.sold + hold.quantity,
        )

    async def release(self, hold: Hold, event: ReservationReleased) -> None:
        self._hold_event(hold, event, "returned" if event.returned_to_sku else "released")
        held, sold, returned = self.counters.held, self.counters.sold, self.counters.returned
        if hold.state is HoldState.CONFIRMED:
            sold -= hold.quantity
        else:
            held -= hold.quantity
        if event.returned_to_sku:
            returned += hold.quantity
            await self._return_to_sku(hold.quantity)
        self.counters = replace(self.counters, held=held, sold=sold, returned=returned)

    async def end(self, unsold: int) -> None:
        event = self.sale.end(unsold)
        merchant, sale_id = self.sale.merchant_id, self.sale.sale_id
        self._appends.append(
            _append(
                FlashSale.stream_id(merchant, sale_id),
                codec.AGGREGATE_SALE,
                merchant,
                self.counters.sale_version,
                [event],
            )
        )
        if unsold:
            await self._return_to_sku(unsold)
        self.counters = replace(
            self.counters,
            ended=True,
            returned=self.counters.returned + unsold,
            sale_version=self.counters.sale_version + 1,
        )

    async def return_unrecorded(self, quantity: int) -> None:
        await self._return_to_sku(quantity)
        self.counters = replace(self.counters, returned=self.counters.returned + quantity)

    def _hold_event(self, hold: Hold, event: HoldEvent, state: str) -> None:
        merchant = self.sale.merchant_id
        self._appends.append(
            _append(
                Hold.stream_id(merchant, hold.hold_id),
                codec.AGGREGATE_HOLD,
                merchant,
                hold.version,
                [event],
            )
        )
        self._hold_states.append((hold.hold_id, state))

    async def _return_to_sku(self, quantity: int) -> None:
        if self._sku is None:
            self._sku = await self._ledger.sku(
                self.sale.merchant_id, self.sale.sku_id, conn=self._conn
            )
        on_hand = self._sku.on_hand + sum(e.quantity for e in self._sku_events)
        self._sku_events.append(self._sku.take_back(self.sale.sale_id, quantity))
        self._sku_events[-1] = replace(self._sku_events[-1], on_hand_after=on_hand + quantity)

    async def flush(self) -> None:
        appends = list(self._appends)
        if self._sku is not None and self._sku_events:
            appends.append(
                _append(
                    SkuStock.stream_id(self._sku.merchant_id, self._sku.sku_id),
                    codec.AGGREGATE_SKU,
                    self._sku.merchant_id,
                    self._sku.version,
                    self._sku_events,
                )
            )
        if appends:
            await self._ledger.store.append(appends, conn=self._conn)
        if self._hold_states:
            states = dict(self._hold_states)  # a hold changed twice ends in its last state
            await self._conn.execute(
                "UPDATE flash_holds h SET state = u.state"
                " FROM unnest($2::text[], $3::text[]) AS u(hold_id, state)"
                " WHERE h.merchant_id = $1 AND h.hold_id = u.hold_id",
                self.sale.merchant_id,
                list(states),
                list(states.values()),
            )
        await _save_counters(self._conn, self.sale.merchant_id, self.sale.sale_id, self.counters)
