"""Redis is only the deciding copy: when it loses a sale mid-rush, or the sale is rebuilt
under running reservations, or a process dies between Redis's decision and the append, the
sale goes on from the event store and ends exactly sold out, never oversold, with Redis and
the store in agreement."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import Pipeline

from services.inventory.adapters.redis_stock import RedisFlashStock, home_bucket, keys_of
from services.inventory.application.flash_sales import (
    UNRECORDED_GRACE_MS,
    FlashSales,
    Reservation,
)
from services.inventory.bootstrap import Inventory, inventory
from services.inventory.domain.sale import HoldState, ReleaseReason
from services.inventory.settings import InventorySettings
from services.inventory.tests.conftest import Clock, InventoryFactory
from services.inventory.tests.flash_helpers import (
    DEADLINE_SECONDS,
    Stage,
    audit,
    hold_rows,
    patient_replica,
    stage_sale,
    tally,
    tripped_no_oversell,
    unexpected,
)
from services.kit.errors import OutcomeUnknownError
from services.kit.testing import CommitCutter, eventually, waiting_for_a_lock

STOCK = 200
LIMIT = 2
TTL = 30


def given_back() -> float:
    """Holds Redis granted that were given back unacknowledged (stale or unrecorded)."""
    found = REGISTRY.get_sample_value(
        "livecommerce_inventory_holds_released_total", {"reason": "unacknowledged"}
    )
    return found or 0.0


Strike = Callable[[], Awaitable[object]]


class Rush:
    """Buyers tapping a sale (three taps each, one or two units), arriving in waves that are
    all in flight together. ``strikes`` maps a wave number to what happens as it is sent:
    the earlier waves are then being decided and recorded, the later ones still to come."""

    def __init__(self, stage: Stage, buyers: int, seed: int, strikes: dict[int, Strike]) -> None:
        self.stage = stage
        self.strikes = strikes
        rng = random.Random(seed)
        self.taps = [
            (f"buyer-{seed}-{n}", rng.choice((1, 1, 2)), f"order-{seed}-{n}-{k}")
            for n in range(buyers)
            for k in range(3)
        ]
        rng.shuffle(self.taps)
        self.granted_at_strikes: list[int] = []

    async def _tap(self, user: str, quantity: int, hold: str) -> Reservation:
        return await self.stage.reserve(user, quantity, hold)

    async def run(self, wave: int = 20, gap: float = 0.002) -> list[object]:
        tasks: list[asyncio.Task[Reservation]] = []
        for number, start in enumerate(range(0, len(self.taps), wave)):
            if strike := self.strikes.get(number):
                self.granted_at_strikes.append((await self.stage.status()).held)
                await strike()
            tasks += [
                asyncio.create_task(self._tap(*tap)) for tap in self.taps[start : start + wave]
            ]
            await asyncio.sleep(gap)
        return await asyncio.gather(*tasks, return_exceptions=True)

    async def check(self, outcomes: list[object]) -> None:
        assert unexpected(outcomes) == []
        assert tripped_no_oversell(outcomes) == []
        assert all(held < STOCK for held in self.granted_at_strikes)  # each struck mid-rush
        granted = {o.hold_id for o in outcomes if isinstance(o, Reservation) and o.reserved}
        assert {r["hold_id"] for r in await hold_rows(self.stage)} == granted
        await self.mop_up()
        assert await self.stage.redis_stock.exists(self.stage.sale)  # so reconcile compares
        status = await audit(self.stage)
        assert (status.held, status.available) == (STOCK, 0)

    async def mop_up(self) -> None:
        """Late buyers take what the rush left: units a refused decision gave back after
        the sold-out memory had turned the last taps away. None may be lost."""
        for n in range(STOCK):
            late = await self.stage.reserve(f"late-{n}", 1, retry=True)  # past the memory
            if not late.reserved:
                return


@pytest.mark.parametrize("buckets", [1, 8], ids=["one-bucket", "hot-sku-eight-buckets"])
async def test_redis_losing_the_sale_mid_rush_rebuilds_it_and_the_rush_sells_exactly_out(
    make_inventory: InventoryFactory, buckets: int
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts, patient_replica(parts, clock) as replica:
        stage = await stage_sale(
            parts, clock, allocated=STOCK, per_user_limit=LIMIT, buckets=buckets
        )
        stage.instance = replica
        epoch = await stage.epoch()

        async def lose_it_again() -> None:
            await eventually(lambda: stage.redis_stock.exists(stage.sale), "the sale rebuilt")
            await stage.lose_redis()

        rush = Rush(
            stage, buyers=500, seed=buckets, strikes={1: stage.lose_redis, 4: lose_it_again}
        )

        outcomes = await rush.run()

        await rush.check(outcomes)
        assert await stage.epoch() >= epoch + 2  # rebuilt after each loss


@pytest.mark.parametrize("buckets", [1, 8], ids=["one-bucket", "hot-sku-eight-buckets"])
async def test_forced_rebuilds_mid_rush_refuse_stale_decisions_and_the_rush_sells_exactly_out(
    make_inventory: InventoryFactory, buckets: int
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts, patient_replica(parts, clock) as replica:
        stage = await stage_sale(
            parts, clock, allocated=STOCK, per_user_limit=LIMIT, buckets=buckets
        )
        stage.instance = replica
        epoch = await stage.epoch()
        before = given_back()
        rebuilds: list[asyncio.Task[bool]] = []

        async def rebuild() -> None:
            # in the background, so that reservations go on being decided while it runs
            rebuilds.append(asyncio.create_task(replica.rebuild(stage.sale, force=True)))

        rush = Rush(
            stage,
            buyers=500,
            seed=10 + buckets,
            strikes={wave: rebuild for wave in (1, 2, 3, 4, 5)},
        )

        outcomes = await rush.run()
        await asyncio.wait_for(asyncio.gather(*rebuilds), DEADLINE_SECONDS)

        await rush.check(outcomes)
        assert await stage.epoch() == epoch + len(rebuilds)
        print(f"stale decisions given back: {given_back() - before:.0f}")


async def test_ending_a_sale_mid_rush_takes_in_flight_holds_and_returns_every_unit_later(
    make_inventory: InventoryFactory,
) -> None:
    """Holds decided before the close but recorded after the end still count; the units
    that were not sold all end up back on the SKU once those holds run out."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts, patient_replica(parts, clock) as replica:
        stage = await stage_sale(
            parts, clock, allocated=STOCK, received=STOCK + 50, per_user_limit=LIMIT, buckets=4
        )
        stage.instance = replica

        async def end() -> None:
            await replica.end(stage.merchant, stage.sale.sale_id)

        rush = Rush(stage, buyers=300, seed=7, strikes={2: end})
        outcomes = await rush.run()
        at_end = await audit(stage)
        granted = [o for o in outcomes if isinstance(o, Reservation) and o.reserved]
        for hold in granted[:3]:
            await replica.confirm(stage.merchant, hold.hold_id)
        clock.advance(3600)
        await replica.sweep()

        assert unexpected(outcomes) == []
        assert tripped_no_oversell(outcomes) == []
        assert 0 < at_end.held < STOCK
        assert at_end.available == 0
        status = await audit(stage)
        sold = status.sold
        assert (status.held, status.returned) == (0, STOCK - sold)
        assert await stage.on_hand() == STOCK + 50 - sold


async def test_a_hold_decided_against_a_state_a_rebuild_replaced_is_given_back_and_decided_again(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=3)
        await stage.reserve("early", 1, "order-early")
        before = given_back()

        # A rebuild holds the sale's lock while a reservation is decided against the old
        # Redis state and waits to be recorded; the rebuild then replaces that state.
        async with parts.ledger.locked_sale(stage.merchant, stage.sale.sale_id) as locked:
            reserving = asyncio.create_task(stage.reserve("caught", 2, "order-caught"))

            async def decided() -> bool:
                return (await stage.redis_stock.records(stage.sale, 0, ["order-caught"])) != [None]

            await eventually(decided, "the reservation decided in Redis")
            epoch = locked.bump_epoch()
            await stage.redis_stock.load(
                locked.sale, epoch, await locked.durable_holds(), closed=False
            )
        reservation = await asyncio.wait_for(reserving, DEADLINE_SECONDS)

        assert reservation.reserved
        assert given_back() == before + 1  # refused as stale, given back, decided again
        rows = {r["hold_id"]: r["epoch"] for r in await hold_rows(stage)}
        assert rows == {"order-early": epoch - 1, "order-caught": epoch}
        status = await audit(stage)
        assert (status.held, status.available) == (3, 0)


async def test_a_large_batch_refused_as_stale_is_given_back_and_every_buyer_served_again(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=300)
        buyers = [f"buyer-{n}" for n in range(150)]

        async with parts.ledger.locked_sale(stage.merchant, stage.sale.sale_id) as locked:
            reserving = [asyncio.create_task(stage.reserve(b, 1, f"order-{b}")) for b in buyers]

            async def decided() -> bool:
                holds = keys_of(stage.sale, 0).holds
                return int(await parts.redis.hlen(holds)) == len(buyers)

            await eventually(decided, "every reservation decided in Redis")
            epoch = locked.bump_epoch()
            await stage.redis_stock.load(locked.sale, epoch, [], closed=False)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*reserving, return_exceptions=True), DEADLINE_SECONDS
        )

        assert unexpected(outcomes) == []
        assert all(isinstance(o, Reservation) and o.reserved for o in outcomes)
        status = await audit(stage)
        assert (status.held, status.available) == (150, 150)


class SlowTransactions(Redis):
    """A Redis client on which a MULTI/EXEC pipeline (a rebuild writes one per bucket) is
    held up after its first one until the test opens ``gate``: the moment between two
    buckets of a rebuild, stretched so that other clients' commands run in it."""

    def __init__(self, url: str) -> None:
        super().__init__(connection_pool=ConnectionPool.from_url(url, decode_responses=True))
        self.between_buckets = asyncio.Event()
        self.gate = asyncio.Event()

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _HeldPipeline(self, transaction, shard_hint)


class _HeldPipeline(Pipeline):
    def __init__(self, client: SlowTransactions, transaction: bool, shard_hint: str | None):
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        replies = await super().execute(raise_on_error)
        if self.is_transaction and not self._client.between_buckets.is_set():
            self._client.between_buckets.set()
            await asyncio.wait_for(self._client.gate.wait(), DEADLINE_SECONDS)
        return replies


def users_at_home(bucket: int, buckets: int, count: int) -> list[str]:
    found = (f"buyer-{n}" for n in range(10_000))
    return [u for u in found if home_bucket(u, buckets) == bucket][:count]


async def test_a_hold_spilled_into_a_bucket_a_rebuild_has_not_reached_yet_is_not_lost(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=4, per_user_limit=2, buckets=2)
        first, spilled = users_at_home(0, 2, 2)
        late = users_at_home(1, 2, 2)
        await stage.reserve(first, 2, "order-first")  # bucket 0 is empty now
        slow = SlowTransactions(parts.settings.redis_url)
        rebuilder = FlashSales(parts.ledger, RedisFlashStock(slow), clock=clock)
        try:
            rebuilding = asyncio.create_task(rebuilder.rebuild(stage.sale, force=True))
            await asyncio.wait_for(slow.between_buckets.wait(), DEADLINE_SECONDS)
            reserving = asyncio.create_task(stage.reserve(spilled, 1, "order-spilled"))

            # Bucket 1 is still of the old epoch: take.lua refuses the spill as stale and
            # the reservation waits for the rebuild instead of landing in a bucket that is
            # about to be overwritten.
            await asyncio.sleep(0.3)
            assert not await parts.redis.hexists(keys_of(stage.sale, 1).holds, "order-spilled")
            assert not reserving.done()
            slow.gate.set()
            await asyncio.wait_for(rebuilding, DEADLINE_SECONDS)
            spilled_hold = await asyncio.wait_for(reserving, DEADLINE_SECONDS)
        finally:
            slow.gate.set()
            await slow.aclose()
        drift = await stage.flash_sales.reconcile([stage.sale])
        stage.forget_sold_out()
        last = await asyncio.gather(
            *(stage.reserve(u, 1, retry=True) for u in late), return_exceptions=True
        )

        assert spilled_hold.reserved
        assert drift == []
        assert tripped_no_oversell(last) == []
        assert sorted(isinstance(o, Reservation) and o.reserved for o in last) == [False, True]
        status = await audit(stage)
        assert (status.held, status.available) == (4, 0)


async def test_confirm_and_release_after_redis_lost_the_sale_rebuild_it_and_keep_counts_exact(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=8, per_user_limit=2, buckets=2)
        for n in range(3):
            assert (await stage.reserve(f"buyer-{n}", 2, f"order-{n}")).reserved

        await stage.lose_redis()
        paid = await stage.flash_sales.confirm(stage.merchant, "order-0")
        await stage.lose_redis()
        cancelled = await stage.flash_sales.release(
            stage.merchant, "order-1", ReleaseReason.CANCELLED
        )
        await stage.lose_redis()
        ended = await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)

        assert (paid, cancelled) == (HoldState.CONFIRMED, HoldState.RELEASED)
        assert (ended.sold, ended.held, ended.returned, ended.available) == (2, 2, 4, 0)
        await audit(stage)


async def test_a_hold_redis_granted_but_nobody_recorded_is_given_back_at_its_expiry(
    make_inventory: InventoryFactory,
) -> None:
    """A process died between Redis's decision and the append: nobody was told; the
    sweeper finds the hold at its expiry, sees no event, and gives the units back."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=2, hold_ttl_seconds=TTL)
        orphan = stage.command("ghost", 2, "order-ghost")
        [decision] = await stage.redis_stock.reserve_many(
            [(stage.sale, orphan)], int(clock().timestamp() * 1000)
        )
        in_flight = await stage.flash_sales.reconcile([stage.sale])
        clock.advance(UNRECORDED_GRACE_MS / 1000)
        drift = await stage.flash_sales.reconcile([stage.sale])
        blocked = await stage.reserve("buyer", 2)
        clock.advance(TTL + 1)

        await stage.flash_sales.sweep()
        stage.forget_sold_out()
        after = await stage.reserve("buyer", 2)

        assert decision.outcome == "OK"
        assert in_flight == []  # as any reservation between Redis and its commit
        assert [(d.figure, d.redis, d.store) for d in drift] == [("unrecorded", 2, 0)]
        assert not blocked.reserved
        assert after.reserved
        events = await tally(stage)
        assert "order-ghost" not in events.state
        assert events.released_events == 0
        status = await audit(stage)
        assert (status.held, status.available) == (2, 0)


async def test_units_of_an_unrecorded_hold_go_back_to_the_sku_even_when_the_sale_ends_first(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=4, received=10, hold_ttl_seconds=TTL)
        await stage.redis_stock.reserve_many(
            [(stage.sale, stage.command("ghost", 2, "order-ghost"))],
            int(clock().timestamp() * 1000),
        )
        ended = await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)
        clock.advance(TTL + 1)
        await stage.flash_sales.sweep()

        status = await stage.status()
        assert ended.returned == 2  # what Redis still had: the orphan's 2 were taken
        assert (status.available, status.returned) == (0, 4)
        assert await stage.on_hand() == 10


async def test_holds_of_a_sale_redis_lost_are_still_released_when_they_run_out(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=4, received=4, hold_ttl_seconds=TTL)
        await stage.reserve("buyer", 2, "order-1")
        await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)
        await stage.lose_redis()
        clock.advance(TTL + 1)

        await stage.flash_sales.sweep()

        assert (await tally(stage)).reasons == {"expired": 1}
        status = await audit(stage)
        assert (status.held, status.returned) == (0, 4)
        assert await stage.on_hand() == 4


async def test_a_reservation_cancelled_while_its_hold_is_recorded_keeps_the_unit_held_in_redis(
    make_inventory: InventoryFactory,
) -> None:
    """The caller gives up (its gRPC deadline passes, it disconnects) while its hold waits
    for the group commit: the hold is recorded all the same, so Redis must keep it held.
    Giving it back there would let another buyer take a unit the store holds."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=2)
        async with parts.ledger.locked_sale(stage.merchant, stage.sale.sale_id):
            reserving = asyncio.create_task(stage.reserve("quitter", 2, "order-quitter"))

            async def decided() -> bool:
                return (await stage.redis_stock.records(stage.sale, 0, ["order-quitter"])) != [None]

            await eventually(decided, "the reservation decided in Redis")
            # decided is not yet handed over: wait for its group commit behind the lock
            await eventually(
                lambda: waiting_for_a_lock(parts.pool, "flash_sales"),
                "the hold's group commit waiting for the sale's lock",
            )
            reserving.cancel()
            [outcome] = await asyncio.gather(reserving, return_exceptions=True)

        async def recorded() -> bool:
            return any(r["hold_id"] == "order-quitter" for r in await hold_rows(stage))

        await eventually(recorded, "the cancelled caller's hold recorded")
        stage.forget_sold_out()
        latecomer = await stage.reserve("latecomer", 1, "order-latecomer")

        assert isinstance(outcome, asyncio.CancelledError)
        assert not latecomer.reserved
        status = await audit(stage)
        assert (status.held, status.available) == (2, 0)


@asynccontextmanager
async def sale_behind_a_cutter(
    settings: InventorySettings,
) -> AsyncIterator[tuple[CommitCutter, Inventory, Stage]]:
    """A sale of 10 units served by an inventory whose database connections go through a
    :class:`CommitCutter`."""
    clock = Clock()
    async with CommitCutter(settings.postgres_dsn) as cutter:
        proxied = settings.model_copy(update={"postgres_dsn": cutter.dsn})
        async with inventory(proxied, clock=clock) as parts:
            yield cutter, parts, await stage_sale(parts, clock, allocated=10)


async def test_holds_whose_commit_the_database_applied_but_never_answered_stay_held(
    inventory_settings: InventorySettings,
) -> None:
    async with sale_behind_a_cutter(inventory_settings) as (cutter, parts, stage):
        cutter.cut_next_commit(applied=True)
        taps = [stage.reserve(f"buyer-{n}", 1, f"order-{n}") for n in range(4)]
        reservations = await asyncio.gather(*taps)

        assert cutter.cuts == 1
        assert [r.reserved for r in reservations] == [True] * 4
        status = await audit(stage)
        assert (status.held, status.available) == (4, 6)
        assert await parts.flash_sales.reconcile([stage.sale]) == []


async def test_holds_whose_commit_cannot_be_found_out_are_not_given_back_on_a_guess(
    inventory_settings: InventorySettings,
) -> None:
    async with sale_behind_a_cutter(inventory_settings) as (cutter, parts, stage):
        cutter.cut_next_commit(applied=True, then_down=True)
        with pytest.raises(OutcomeUnknownError):
            await stage.reserve("buyer-0", 1, "order-0")
        cutter.come_back()

        status = await audit(stage)  # the hold was recorded after all
        assert (status.held, status.available) == (1, 9)
        assert await parts.flash_sales.reconcile([stage.sale]) == []
        repeated = await stage.reserve("buyer-0", 1, "order-0")
        assert repeated.reserved


async def test_reservations_in_flight_are_no_drift_while_a_unit_redis_invented_is(
    make_inventory: InventoryFactory,
) -> None:
    """The worker reconciles live sales while they sell: the holds Redis granted whose group
    commit has not run yet are not drift (else every busy sale would page someone)."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=100_000, per_user_limit=1, buckets=2)
        buying = True
        bought = 0

        async def buyer(worker: int) -> None:
            nonlocal bought
            while buying:
                assert (await stage.reserve(f"buyer-{worker}-{bought}")).reserved
                bought += 1

        buyers = [asyncio.create_task(buyer(worker)) for worker in range(32)]
        await eventually(lambda: _at_least(lambda: bought, 200), "buyers under way")
        while_buying = [await stage.flash_sales.reconcile([stage.sale]) for _ in range(3)]
        still_buying = bought
        buying = False
        await asyncio.gather(*buyers)
        await parts.redis.incrby(keys_of(stage.sale, 0).stock, 1)
        invented = await stage.flash_sales.reconcile([stage.sale])

        assert while_buying == [[], [], []]
        assert still_buying < bought  # the reconciliations ran while reservations went on
        assert [(d.figure, d.redis - d.store) for d in invented] == [("available", 1)]


async def _at_least(count: Callable[[], int], least: int) -> bool:
    return count() >= least


async def test_reconciling_a_sale_in_agreement_does_not_wait_for_its_lock(
    make_inventory: InventoryFactory,
) -> None:
    """Reading a big sale's holds under its lock kept its reservations waiting; a sale whose
    Redis and store agree is compared without it (and one that disagrees, under it)."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=10, buckets=2)
        for buyer in range(4):
            assert (await stage.reserve(f"buyer-{buyer}")).reserved

        async with parts.ledger.locked_sale(stage.merchant, stage.sale.sale_id):
            while_locked = await asyncio.wait_for(
                stage.flash_sales.reconcile([stage.sale]), timeout=5
            )
        await parts.redis.incrby(keys_of(stage.sale, 1).stock, 2)
        invented = await stage.flash_sales.reconcile([stage.sale])

        assert while_locked == []
        assert [(d.figure, d.redis - d.store) for d in invented] == [("available", 2)]
