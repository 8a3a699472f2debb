"""Flash-sale use cases: schedule, reserve (the hot path), confirm, release, end, and the
housekeeping that keeps Redis and the event store in agreement (sweep, rebuild, reconcile).

The reserve path: validate; answer "sold out" from this process's memory when it knows;
otherwise let Redis decide (many requests, one pipeline), record the holds Redis granted
(many holds, one transaction) and only then answer. A hold that could not be recorded is
given back in Redis before the error is returned: the buyer is never told "yours" for a
hold that is not durable, and no unit stays taken for a hold nobody was told about.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Gauge

from services.inventory.application.ports import (
    Counters,
    Decision,
    DurableHold,
    FlashStock,
    LockedSale,
    PendingHold,
    Released,
    SaleRecords,
    SaleSnapshot,
    StaleEpochError,
)
from services.inventory.domain.sale import (
    AllocateToSale,
    FlashSale,
    Hold,
    HoldConflictError,
    HoldNotFoundError,
    HoldReleasedError,
    HoldState,
    PerUserLimitError,
    ReleaseReason,
    ReserveStock,
    SaleNotFoundError,
    SaleNotOpenError,
    SaleState,
    StockReserved,
    epoch_ms,
    from_epoch_ms,
)
from services.inventory.domain.stock import InvalidQuantityError, SkuNotFoundError
from services.kit.batching import MicroBatcher, record_or_give_back, until_recorded
from services.kit.context import current_context
from services.kit.errors import KitError, UnavailableError
from services.kit.eventstore import retry_on_conflict, utcnow
from services.kit.logging import get_logger
from services.kit.sold_out import SoldOutMemory
from services.kit.tenancy import validate_id, validate_merchant_id

log = get_logger(__name__)

RESERVATIONS = Counter(
    "livecommerce_inventory_reservations_total", "Reserve answers by outcome", ["outcome"]
)
_RESERVED = RESERVATIONS.labels("reserved")  # the hot path's two: no label lookup per call
_SOLD_OUT_REMEMBERED = RESERVATIONS.labels("sold_out_remembered")
RELEASED = Counter(
    "livecommerce_inventory_holds_released_total", "Holds released, by reason", ["reason"]
)
DRIFT = Gauge(
    "livecommerce_inventory_reconcile_drift",
    "Units by which Redis and the event store disagree, per sale and figure",
    ["sale", "figure"],
)
REBUILDS = Counter("livecommerce_inventory_rebuilds_total", "Sales rebuilt in Redis from events")

SWEEP_CHUNK = 256
"""Live sales a sweep looks at in one Redis round trip."""

SWEEP_ROUNDS = 20
"""Looks one sweep takes at most while buckets still have more run-out holds than its
limit."""

EXPIRE_CHUNK = 32
"""Run-out holds of a sale released in one transaction. The sale's lock, which its
reservations' group commits wait for, is held through it: 7 ms (median) for 32, 11 ms for
64 (docs/inventory.md)."""

UNRECORDED_GRACE_MS = 10_000
"""A hold Redis granted is recorded within milliseconds, or within a few seconds while the
database struggles; one that is still not in the store after this long never will be."""

DRIFT_FIGURES = ("available", "held", "sold", "users", "epoch", "missing", "unrecorded")


@dataclass(frozen=True)
class Reservation:
    hold_id: str
    reserved: bool
    expires_at: datetime | None = None
    remaining: int = 0


@dataclass(frozen=True)
class SaleStatus:
    sale: FlashSale
    state: str
    allocated: int
    available: int
    held: int
    sold: int
    returned: int


@dataclass(frozen=True)
class Drift:
    merchant_id: str
    sale_id: str
    figure: str
    redis: int
    store: int


class FlashSales:
    def __init__(
        self,
        records: SaleRecords,
        stock: FlashStock,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_batch: int = 256,
        decide_interval: float = 0.0,
        sold_out_ttl: float = 1.0,
    ) -> None:
        """``decide_interval``: the least time (s) between two Redis pipelines of a busy
        process (see :class:`MicroBatcher`); the group commit follows the decisions."""
        self._records = records
        self._stock = stock
        self._clock = clock
        self.sold_out = SoldOutMemory(sold_out_ttl)
        self._catalog: dict[tuple[str, str], FlashSale] = {}
        self._deciding: MicroBatcher[tuple[FlashSale, ReserveStock], Decision] = MicroBatcher(
            self._decide,
            max_batch=max_batch,
            max_in_flight=1,
            min_interval=decide_interval,
            name="inventory.reserve.decide",
        )
        self._recording: MicroBatcher[tuple[FlashSale, PendingHold], None] = MicroBatcher(
            self._record,
            max_batch=max_batch,
            max_in_flight=records.group_commits,
            name="inventory.reserve.record",
        )

    # -- the hot path -------------------------------------------------------------------

    async def reserve(self, command: ReserveStock, *, retry: bool = False) -> Reservation:
        """Hold units for a buyer. ``retry`` marks a request re-sent after its answer was
        lost: it is never answered from the sold-out memory, which knows no hold ids, so a
        hold the lost answer granted is found and returned again."""
        command = command.validated()
        merchant, sale_id = command.merchant_id, command.sale_id
        sale = await self._sale(merchant, sale_id)
        if command.quantity > sale.per_user_limit:
            raise InvalidQuantityError(
                f"quantity must be between 1 and the sale's limit of {sale.per_user_limit}"
            )
        if not retry and self.sold_out.knows(merchant, sale_id):
            state = sale.state(self._clock())
            if state is not SaleState.OPEN:
                raise SaleNotOpenError(f"the sale is {state.value}")
            _SOLD_OUT_REMEMBERED.inc()
            return Reservation(command.hold_id, reserved=False)
        for _ in range(3):
            decision = await self._deciding.submit((sale, command))
            outcome = decision.outcome
            if outcome == "OK":
                self.sold_out.forget(merchant, sale_id)  # a probe after a lapse: units back
                try:
                    return await self._make_durable(sale, command, decision)
                except _Retry:
                    continue
            if outcome == "NOSALE":
                await self.rebuild(sale)
                continue
            RESERVATIONS.labels(outcome.lower()).inc()
            if outcome == "SOLD_OUT":
                if decision.remaining == 0:
                    self.sold_out.remember(merchant, sale_id)
                else:  # fewer units left than asked for: others may still buy
                    self.sold_out.forget(merchant, sale_id)
                return Reservation(command.hold_id, reserved=False, remaining=decision.remaining)
            if outcome == "DUP":
                return await self._repeat(command, decision)
            raise _refusal(outcome, decision)
        raise UnavailableError("the sale's stock is being rebuilt; retry")

    async def _decide(self, batch: Sequence[tuple[FlashSale, ReserveStock]]) -> list[Decision]:
        return await self._stock.reserve_many(batch, epoch_ms(self._clock()))

    async def _record(
        self, batch: Sequence[tuple[FlashSale, PendingHold]]
    ) -> list[BaseException | None]:
        """One transaction for the batch's holds; a hold it could not record is given back
        in Redis by the batch, never by its request (a cancelled request's hold is recorded
        all the same: giving it back would free a unit the store holds, an oversell)."""

        async def record(
            holds: Sequence[tuple[FlashSale, PendingHold]],
        ) -> list[BaseException | None]:
            return await self._records.record_reservations([pending for _, pending in holds])

        async def give_back(hold: tuple[FlashSale, PendingHold]) -> None:
            await self._give_back(hold[0], hold[1].event)

        return await record_or_give_back(batch, record, give_back)

    async def _make_durable(
        self, sale: FlashSale, command: ReserveStock, decision: Decision
    ) -> Reservation:
        event = StockReserved(
            hold_id=command.hold_id,
            sale_id=sale.sale_id,
            sku_id=sale.sku_id,
            user_id=command.user_id,
            quantity=command.quantity,
            expires_at=from_epoch_ms(decision.expiry_ms),
            bucket=decision.bucket,
            home_bucket=decision.home_bucket,
            epoch=decision.epoch,
        )
        try:
            await self._recording.submit(
                (sale, PendingHold(command.merchant_id, event, current_context()))
            )
        except Exception as error:  # given back in Redis by the batch (see _record)
            if isinstance(error, StaleEpochError):
                raise _Retry from error
            if isinstance(error, KitError):
                raise
            log.error("hold not recorded; given back", hold_id=command.hold_id, error=repr(error))
            raise UnavailableError(
                "the hold could not be recorded; nothing was reserved"
            ) from error
        _RESERVED.inc()
        return Reservation(
            command.hold_id,
            reserved=True,
            expires_at=event.expires_at,
            remaining=decision.remaining,
        )

    async def _give_back(self, sale: FlashSale, event: StockReserved) -> None:
        released = await self._stock.release(
            sale,
            event.hold_id,
            event.bucket,
            event.home_bucket,
            epoch_ms(self._clock()),
            only_if_expired=False,
            forget=True,
        )
        RELEASED.labels(ReleaseReason.UNACKNOWLEDGED.value).inc()
        await self._return_unrecorded(sale, released)

    async def _return_unrecorded(self, sale: FlashSale, released: Released) -> None:
        """Units of a hold that never became durable were given back in Redis; if the sale
        had closed by then, Redis did not take them back, so they go back to the SKU."""
        if released.outcome != "OK" or not released.returned_to_sku:
            return

        async def attempt() -> None:
            async with self._records.locked_sale(sale.merchant_id, sale.sale_id) as locked:
                await locked.return_unrecorded(released.quantity)

        await retry_on_conflict(attempt)

    async def _repeat(self, command: ReserveStock, decision: Decision) -> Reservation:
        """The same hold id again: the same answer if the content is the same."""
        existing = decision.existing
        if (
            existing is None
            or existing.user_id != command.user_id
            or existing.quantity != command.quantity
        ):
            raise HoldConflictError(f"hold {command.hold_id} exists with other content")

        async def recorded() -> Hold | None:
            hold = await self._records.hold(command.merchant_id, command.hold_id)
            return hold if hold.exists else None

        # A double tap decided in the same batch as the first: the first is being recorded.
        hold = await until_recorded(recorded)
        if hold is None:
            raise UnavailableError(f"hold {command.hold_id} is being recorded; retry")
        if (hold.sale_id, hold.user_id, hold.quantity) != (
            command.sale_id,
            command.user_id,
            command.quantity,
        ):
            raise HoldConflictError(f"hold {command.hold_id} exists with other content")
        if hold.state is HoldState.RELEASED:
            raise HoldReleasedError(f"hold {command.hold_id} was released")
        return Reservation(
            command.hold_id, reserved=True, expires_at=hold.expires_at, remaining=decision.remaining
        )

    async def _sale(self, merchant_id: str, sale_id: str) -> FlashSale:
        """The sale's routing facts (ids, buckets), which never change once scheduled."""
        key = (merchant_id, sale_id)
        sale = self._catalog.get(key)
        if sale is None:
            sale, _ = await self._records.sale(merchant_id, sale_id)
            self._catalog[key] = sale
        return sale

    # -- confirm and release --------------------------------------------------------------

    async def confirm(self, merchant_id: str, hold_id: str) -> HoldState:
        sale_id = await self._sale_of_hold(merchant_id, hold_id)

        async def attempt() -> HoldState:
            async with self._records.locked_sale(merchant_id, sale_id) as locked:
                hold = await locked.hold(hold_id)
                event = hold.confirm()
                if event is None:
                    return HoldState.CONFIRMED
                outcome = await self._stock.confirm(locked.sale, hold_id, hold.bucket)
                if outcome == "NOHOLD":
                    await self._rebuild_locked(locked, force=True)
                    outcome = await self._stock.confirm(locked.sale, hold_id, hold.bucket)
                if outcome == "RELEASED":
                    await self._record_release(locked, hold_id, ReleaseReason.EXPIRED)
                    return HoldState.RELEASED
                locked.confirm(hold, event)
                return HoldState.CONFIRMED

        state = await retry_on_conflict(attempt)
        if state is HoldState.RELEASED:
            raise HoldReleasedError(f"hold {hold_id} had expired; it cannot be paid")
        return state

    async def release(self, merchant_id: str, hold_id: str, reason: ReleaseReason) -> HoldState:
        sale_id = await self._sale_of_hold(merchant_id, hold_id)

        async def attempt() -> HoldState:
            async with self._records.locked_sale(merchant_id, sale_id) as locked:
                return await self._record_release(locked, hold_id, reason)

        return await retry_on_conflict(attempt)

    async def _record_release(
        self, locked: LockedSale, hold_id: str, reason: ReleaseReason
    ) -> HoldState:
        hold = await locked.hold(hold_id)
        released = await self._release_holds(locked, [hold], reason, only_if_expired=False)
        return HoldState.RELEASED if released else hold.state

    async def _release_holds(
        self,
        locked: LockedSale,
        holds: Sequence[Hold],
        reason: ReleaseReason,
        *,
        only_if_expired: bool,
    ) -> int:
        """Under the sale's lock: give back in Redis, in one round trip, the units of the
        holds not released yet, then record the releases; how many were released.
        ``only_if_expired`` (the sweeper): only holds still held and past their time; a hold
        paid meanwhile is confirmed in Redis instead (Redis was behind). Should Redis have
        lost the sale, it is rebuilt from the store before anything is recorded (the store
        has none of these releases yet, so the rebuilt sale has the holds again) and the
        holds are given back again."""
        pending: list[Hold] = []
        for hold in holds:
            if not hold.exists:
                raise HoldNotFoundError(f"hold {hold.hold_id} not found")
            if hold.state is HoldState.RELEASED:
                continue
            if only_if_expired and hold.state is not HoldState.HELD:
                await self._stock.confirm(locked.sale, hold.hold_id, hold.bucket)
                continue
            pending.append(hold)
        if not pending:
            return 0
        now_ms = epoch_ms(self._clock())
        targets = [(hold.hold_id, hold.bucket, hold.home_bucket) for hold in pending]
        answers = await self._stock.release_many(
            locked.sale, targets, now_ms, only_if_expired=only_if_expired
        )
        if any(answer.outcome == "NOHOLD" for answer in answers):
            await self._rebuild_locked(locked, force=True)
            answers = await self._stock.release_many(
                locked.sale, targets, now_ms, only_if_expired=only_if_expired
            )
        released = 0
        for hold, answer in zip(pending, answers, strict=True):
            if answer.outcome not in ("OK", "ALREADY"):
                continue
            event = hold.release(reason, answer.returned_to_sku)
            assert event is not None
            await locked.release(hold, event)
            released += 1
        if released:
            RELEASED.labels(reason.value).inc(released)
        return released

    async def _sale_of_hold(self, merchant_id: str, hold_id: str) -> str:
        validate_merchant_id(merchant_id)
        validate_id(hold_id, "hold id")
        hold = await self._records.hold(merchant_id, hold_id)
        if not hold.exists:
            raise HoldNotFoundError(f"hold {hold_id} not found")
        return hold.sale_id

    # -- the sale's life ------------------------------------------------------------------

    async def schedule(self, command: AllocateToSale) -> FlashSale:
        """Allocate SKU stock to a new sale. Idempotent on the sale id: the same definition
        again returns the sale (and sets nothing more aside); another definition under the
        same id is SaleExistsError."""
        validate_merchant_id(command.merchant_id)
        validate_id(command.sale_id, "sale id")
        validate_id(command.sku_id, "SKU id")

        async def attempt() -> tuple[FlashSale, bool]:
            # The SKU is read before the sale: a concurrent identical call that wins commits
            # both together, so this one then either sees the sale (a repeat) or fails its
            # append on the SKU's version and retries; never "not enough stock" for units
            # that its twin set aside.
            sku = await self._records.sku(command.merchant_id, command.sku_id)
            try:
                sale, _ = await self._records.sale(command.merchant_id, command.sale_id)
            except SaleNotFoundError:
                sale = FlashSale(merchant_id=command.merchant_id, sale_id=command.sale_id)
            if sale.exists:
                sale.schedule(command, self._clock())  # refuses another definition
                return sale, False
            if sku.version == 0:
                raise SkuNotFoundError(f"SKU {command.sku_id} not found")
            scheduled = sale.schedule(command, self._clock())
            assert scheduled is not None  # a new sale
            allocated = sku.allocate(command.sale_id, command.quantity)
            await self._records.schedule(sku, allocated, scheduled)
            return sale.apply(scheduled), True

        sale, created = await retry_on_conflict(attempt)
        # A repeat rebuilds Redis only if it lacks the sale (the first call may have died
        # before loading it); forcing it would bump the epoch of a live sale for nothing.
        await self.rebuild(sale, force=created)
        return sale

    async def end(self, merchant_id: str, sale_id: str) -> SaleStatus:
        """Close the sale now and return its unsold units to the SKU. Idempotent."""
        validate_merchant_id(merchant_id)
        validate_id(sale_id, "sale id")

        async def attempt() -> None:
            async with self._records.locked_sale(merchant_id, sale_id) as locked:
                if locked.counters.ended:
                    return
                if not await self._stock.exists(locked.sale):
                    await self._rebuild_locked(locked, force=True)
                # Holds Redis granted before the close and still being recorded land after
                # it and count; units of holds that never become durable are returned to
                # the SKU when they are given back (see _return_unrecorded).
                await locked.end(await self._stock.close(locked.sale))

        await retry_on_conflict(attempt)
        self._catalog.pop((merchant_id, sale_id), None)
        return await self.status(merchant_id, sale_id)

    async def status(self, merchant_id: str, sale_id: str) -> SaleStatus:
        sale, counters = await self._records.sale(merchant_id, sale_id)
        now = self._clock()
        state = "ended" if counters.ended else sale.state(now).value
        return SaleStatus(
            sale=sale,
            state=state,
            allocated=counters.allocated,
            available=counters.available,
            held=counters.held,
            sold=counters.sold,
            returned=counters.returned,
        )

    # -- keeping Redis and the store in agreement -------------------------------------------

    async def rebuild(self, sale: FlashSale, *, force: bool = False) -> bool:
        """Rebuild the sale in Redis from the event store; False if it was there already."""
        async with self._records.locked_sale(sale.merchant_id, sale.sale_id) as locked:
            return await self._rebuild_locked(locked, force=force)

    async def _rebuild_locked(self, locked: LockedSale, *, force: bool) -> bool:
        if not force and await self._stock.exists(locked.sale):
            return False
        epoch = locked.bump_epoch()
        holds = await locked.durable_holds()
        await self._stock.load(locked.sale, epoch, holds, closed=locked.counters.ended)
        await self._stock.announce_restock(locked.sale)
        REBUILDS.inc()
        log.info(
            "sale rebuilt in redis", sale_id=locked.sale.sale_id, epoch=epoch, holds=len(holds)
        )
        return True

    async def sweep(self, limit: int = 500) -> int:
        """Release expired holds (any number of replicas may sweep at once); return how many.
        The live sales are looked at SWEEP_CHUNK at a time, one Redis round trip each, so a
        sweep's cost does not grow a round trip per sale and bucket. A bucket gives at most
        ``limit`` holds per look; while one gave that many, the sweep looks again (at most
        SWEEP_ROUNDS times), so a crowd of holds running out together is not released at
        ``limit`` per sweep interval."""
        released = 0
        for _ in range(SWEEP_ROUNDS):
            found, more = await self._sweep_once(limit)
            released += found
            if not (found and more):
                break
        return released

    async def _sweep_once(self, limit: int) -> tuple[int, bool]:
        """One look at every live sale: how many holds were released, and whether a bucket
        had more run-out holds than it gave."""
        now = self._clock()
        now_ms = epoch_ms(now)
        released, more = 0, False
        sales = await self._records.live_sales()
        for start in range(0, len(sales), SWEEP_CHUNK):
            chunk = sales[start : start + SWEEP_CHUNK]
            for sale, expired in zip(
                chunk, await self._stock.expiring(chunk, now_ms, limit), strict=True
            ):
                if expired is None:
                    # A sale Redis lost still has holds to expire: rebuild it, then look
                    # again. Asked without the sale's row lock first, so that a sweep of
                    # sales Redis has takes no lock the group commit waits for (rebuild
                    # asks again under the lock).
                    await self.rebuild(sale)
                    (expired,) = await self._stock.expiring([sale], now_ms, limit)
                for bucket, hold_ids in enumerate(expired or ()):
                    more = more or len(hold_ids) >= limit
                    for first in range(0, len(hold_ids), EXPIRE_CHUNK):
                        chunk_ids = hold_ids[first : first + EXPIRE_CHUNK]
                        released += await self._expire(sale, bucket, chunk_ids, now)
        return released, more

    async def _expire(
        self, sale: FlashSale, bucket: int, hold_ids: Sequence[str], now: datetime
    ) -> int:
        """Release run-out holds of one bucket: what Redis and the store know of them read
        once for them all, and the releases recorded in one transaction of the sale."""
        now_ms = epoch_ms(now)
        records = await self._stock.records(sale, bucket, hold_ids)
        recorded = await self._records.recorded_holds(sale.merchant_id, hold_ids)
        durable: list[str] = []
        for hold_id, record in zip(hold_ids, records, strict=True):
            if record is not None and record.state == "P":
                await self._stock.forget_pending(sale, bucket, hold_id)
            elif hold_id in recorded:
                durable.append(hold_id)
            elif record is not None:
                # Redis granted it but it never became durable (the process died between):
                # nobody was told; give the units back.
                released = await self._stock.release(
                    sale,
                    hold_id,
                    record.bucket,
                    record.home_bucket,
                    now_ms,
                    only_if_expired=True,
                    forget=True,
                )
                RELEASED.labels(ReleaseReason.UNACKNOWLEDGED.value).inc()
                await self._return_unrecorded(sale, released)
        if not durable:
            return 0

        async def attempt() -> int:
            async with self._records.locked_sale(sale.merchant_id, sale.sale_id) as locked:
                holds = await locked.holds(durable)
                return await self._release_holds(
                    locked, holds, ReleaseReason.EXPIRED, only_if_expired=True
                )

        return await retry_on_conflict(attempt)

    async def reconcile(self, sales: Sequence[FlashSale] | None = None) -> list[Drift]:
        """Compare Redis with the event store for the given sales (default: every live
        sale); report and return every difference. A sale is compared without its lock
        first, and again under it only when something looked off there: reading a big
        sale's holds under the lock kept its reservations waiting (a sale of 50,000 holds:
        610-820 ms, docs/inventory.md). A sale Redis has lost is rebuilt under the lock
        (that is an outage, counted by the rebuild metric, not drift)."""
        drifts: list[Drift] = []
        now_ms = epoch_ms(self._clock())
        for sale in sales if sales is not None else await self._records.live_sales():
            found = await self._compare_unlocked(sale, now_ms)
            if found:
                found = await self._compare_locked(sale, now_ms)
            for figure in DRIFT_FIGURES:
                drift = next((d for d in found if d.figure == figure), None)
                DRIFT.labels(f"{sale.merchant_id}:{sale.sale_id}", figure).set(
                    abs(drift.redis - drift.store) if drift else 0
                )
            for drift in found:
                log.warning("inventory drift", **drift.__dict__)
            drifts += found
        return drifts

    async def _compare_unlocked(self, sale: FlashSale, now_ms: int) -> list[Drift]:
        """The store first, as one snapshot, then Redis: a hold the store has was granted
        in Redis before, so a reservation in flight is only ever on Redis's side, where
        :func:`_compare` leaves it out. A release or a payment between the two reads shows
        as a difference, and the caller looks again under the lock."""
        state = await self._records.sale_as_of_now(sale.merchant_id, sale.sale_id)
        if state is None:
            return await self._compare_locked(sale, now_ms)  # says it is not found
        stored, counters, durable = state
        snapshot = await self._stock.snapshot(stored)
        return _compare(stored, snapshot, counters, durable, now_ms)

    async def _compare_locked(self, sale: FlashSale, now_ms: int) -> list[Drift]:
        async with self._records.locked_sale(sale.merchant_id, sale.sale_id) as locked:
            await self._rebuild_locked(locked, force=False)  # Redis lost it: repair
            snapshot = await self._stock.snapshot(locked.sale)
            counters = locked.counters
            durable = await locked.durable_holds()
        return _compare(locked.sale, snapshot, counters, durable, now_ms)


def _compare(
    sale: FlashSale,
    snapshot: SaleSnapshot,
    counters: Counters,
    durable: Sequence[DurableHold],
    now_ms: int,
) -> list[Drift]:
    """Redis against the store. Holds Redis granted that the store does not have yet are
    not counted on either side: a reservation is decided in Redis before its group commit
    takes the sale's lock, so a sale being bought always has some in flight. One granted
    over UNRECORDED_GRACE_MS ago is drift of its own ("unrecorded": its process died
    before the commit; the sweeper gives it back at its expiry)."""
    if not snapshot.exists:
        # Redis lost it: the next reservation or sweep rebuilds it from the store.
        return [Drift(sale.merchant_id, sale.sale_id, "missing", 0, counters.available)]
    recorded = {hold.hold_id for hold in durable}
    in_flight_users: Tally[str] = Tally()
    in_flight_held = unrecorded = 0
    for hold_id, record in snapshot.holds.items():
        if hold_id in recorded or record.state not in ("H", "P"):
            continue
        in_flight_users[record.user_id] += record.quantity
        if record.state == "H":
            in_flight_held += record.quantity
        granted_ms = record.expiry_ms - sale.hold_ttl_seconds * 1000
        if now_ms - granted_ms >= UNRECORDED_GRACE_MS:
            unrecorded += record.quantity
    pairs = [
        ("epoch", snapshot.epoch, counters.epoch),
        ("held", snapshot.held - in_flight_held, counters.held),
        ("sold", snapshot.sold, counters.sold),
        ("unrecorded", unrecorded, 0),
    ]
    if not counters.ended:
        pairs.append(("available", snapshot.available + in_flight_held, counters.available))
    users: Tally[str] = Tally()
    for hold in durable:
        if hold.state in ("held", "confirmed"):
            users[hold.user_id] += hold.quantity
    redis_users = snapshot.users - in_flight_users
    if users != redis_users:
        off = sum(((users - redis_users) + (redis_users - users)).values())
        pairs.append(("users", off, 0))
    return [
        Drift(sale.merchant_id, sale.sale_id, figure, redis, store)
        for figure, redis, store in pairs
        if redis != store
    ]


class _Retry(Exception):
    pass


def _refusal(outcome: str, decision: Decision) -> KitError:
    limit = decision.limit
    if outcome == "CLOSED":
        return SaleNotOpenError("the sale has ended")
    if outcome == "NOT_OPEN":
        return SaleNotOpenError("the sale has not started yet")
    if outcome == "BAD_QTY":
        return InvalidQuantityError(f"quantity must be between 1 and the sale's limit of {limit}")
    if outcome == "LIMIT":
        return PerUserLimitError(f"the per-user limit of {limit} is reached")
    return UnavailableError(f"unexpected answer from the stock: {outcome}")
