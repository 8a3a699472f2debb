"""A flash sale's life with a clock the test moves: the window opens and closes, holds run
out and are swept, are paid or cancelled (each once), refunded, and the sale ends and gives
its units back to the SKU; every step leaves Redis and the event store in agreement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.inventory.adapters.redis_stock import RedisFlashStock
from services.inventory.application.flash_sales import FlashSales
from services.inventory.application.ports import Released
from services.inventory.domain.sale import (
    FlashSale,
    HoldReleasedError,
    HoldState,
    ReleaseReason,
    SaleNotOpenError,
)
from services.inventory.tests.conftest import Clock, InventoryFactory
from services.inventory.tests.flash_helpers import (
    Stage,
    audit,
    hold_rows,
    patient_replica,
    stage_sale,
    tally,
)
from services.kit.testing import eventually, unique

TTL = 30


async def test_a_sale_refuses_reservations_before_it_opens_and_after_it_closes(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, opens_in=60, lasts=60)

        with pytest.raises(SaleNotOpenError):
            await stage.reserve("early-bird")
        scheduled = await stage.status()
        clock.advance(61)
        during = await stage.reserve("on-time")
        clock.advance(60)
        with pytest.raises(SaleNotOpenError):
            await stage.reserve("latecomer")

        assert scheduled.state == "scheduled"
        assert during.reserved
        status = await audit(stage)
        assert (status.state, status.held, status.available) == ("ended", 1, 4)


@pytest.mark.parametrize("redis_lost", [False, True], ids=["redis kept", "redis lost"])
async def test_a_hold_that_runs_out_is_released_by_the_sweeper_and_its_units_sell_again(
    make_inventory: InventoryFactory, redis_lost: bool
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=2, hold_ttl_seconds=TTL)
        first = await stage.reserve("slow-payer", 2, "order-slow")
        sold_out = await stage.reserve("next-in-line")
        if redis_lost:  # the sweeper rebuilds the sale before it looks for expired holds
            await stage.lose_redis()
        clock.advance(TTL - 1)
        await stage.flash_sales.sweep()
        too_early = await tally(stage)

        clock.advance(2)
        await stage.flash_sales.sweep()
        await stage.flash_sales.sweep()
        stage.forget_sold_out()  # what the restock announcement does in a served process
        second = await stage.reserve("next-in-line", 2)

        assert first.reserved
        assert not sold_out.reserved
        assert too_early.released_events == 0
        assert second.reserved
        events = await tally(stage)
        assert events.reasons == {"expired": 1}
        assert events.state["order-slow"] == "released"
        status = await audit(stage)
        assert (status.held, status.available) == (2, 0)


async def test_one_sweep_releases_the_run_out_holds_of_every_sale_and_bucket_and_of_a_lost_sale(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stages = [
            await stage_sale(parts, clock, allocated=8, hold_ttl_seconds=TTL, buckets=buckets)
            for buckets in (1, 4, 2)
        ]
        for stage in stages:
            for buyer in range(4):
                assert (await stage.reserve(f"buyer-{buyer}")).reserved
        spread = stages[1]
        buckets_used = {
            bucket
            for bucket in range(4)
            for hold in (await tally(spread)).state
            if await spread.redis_stock.records(spread.sale, bucket, [hold]) != [None]
        }
        await stages[2].lose_redis()  # the sweep rebuilds it, then releases its holds too
        clock.advance(TTL + 1)

        released = await stages[0].flash_sales.sweep()

        assert len(buckets_used) > 1  # the four buyers' holds are in more than one bucket
        assert released >= 12  # the module's other sales may have holds that ran out too
        for stage in stages:
            events = await tally(stage)
            assert events.reasons == {"expired": 4}
            status = await audit(stage)
            assert (status.held, status.available) == (0, 8)


async def test_a_crowd_of_holds_running_out_together_is_released_in_one_sweep_beyond_its_limit(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        # as many buyers as units: whichever bucket more of them call home runs out, and
        # the rest spill into the other (their quota stays at home, their units do not)
        stage = await stage_sale(parts, clock, allocated=90, buckets=2, hold_ttl_seconds=TTL)
        holds = [unique("order") for _ in range(90)]
        paid = holds[:5]
        reserved = await asyncio.gather(
            *(stage.reserve(f"buyer-{n}", 1, hold) for n, hold in enumerate(holds))
        )
        spilled = [row for row in await hold_rows(stage) if row["bucket"] != row["home_bucket"]]
        for hold in paid:
            await stage.flash_sales.confirm(stage.merchant, hold)
        clock.advance(TTL + 1)

        released = await stage.flash_sales.sweep(limit=20)  # 85 to release, 20 per look
        again = await tally(stage)
        await stage.flash_sales.sweep(limit=20)

        assert all(r.reserved for r in reserved)
        assert spilled
        assert released >= 85  # the module's other sales may have holds that ran out too
        assert again.reasons == {"expired": 85}
        events = await tally(stage)
        assert events.reasons == {"expired": 85}
        assert {events.state[hold] for hold in paid} == {"confirmed"}
        assert {events.state[hold] for hold in holds[5:]} == {"released"}
        status = await audit(stage)
        assert (status.held, status.sold, status.available) == (0, 5, 85)


class _RedisFailingOverMidSweep(RedisFlashStock):
    """The real Redis stock, but the sale is gone from Redis (a failover without its data)
    just as the sweeper gives back its first batch of holds: after it looked for them."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(stage.parts.redis)
        self._stage = stage
        self.failovers = 0

    async def release_many(
        self,
        sale: FlashSale,
        holds: Sequence[tuple[str, int, int]],
        now_ms: int,
        *,
        only_if_expired: bool,
        forget: bool = False,
    ) -> list[Released]:
        if sale.sale_id == self._stage.sale.sale_id and not self.failovers:
            self.failovers += 1
            await self._stage.lose_redis()
        return await super().release_many(
            sale, holds, now_ms, only_if_expired=only_if_expired, forget=forget
        )


async def test_a_sale_redis_loses_while_the_sweeper_releases_is_rebuilt_and_each_hold_released_once(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=50, hold_ttl_seconds=TTL)
        holds = [unique("order") for _ in range(40)]
        for n, hold in enumerate(holds):
            assert (await stage.reserve(f"buyer-{n}", 1, hold)).reserved
        epoch = await stage.epoch()
        failing = _RedisFailingOverMidSweep(stage)
        sweeper = FlashSales(parts.ledger, failing, clock=clock)
        clock.advance(TTL + 1)

        await sweeper.sweep()

        assert failing.failovers == 1
        assert await stage.epoch() == epoch + 1  # rebuilt from the store, once
        events = await tally(stage)
        assert events.reasons == {"expired": 40}
        assert set(events.state.values()) == {"released"}
        status = await audit(stage)
        assert (status.held, status.available) == (0, 50)


async def test_paying_for_a_hold_after_the_sweeper_released_it_is_refused(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=3, hold_ttl_seconds=TTL)
        await stage.reserve("buyer", 2, "order-1")
        clock.advance(TTL + 1)
        await stage.flash_sales.sweep()

        with pytest.raises(HoldReleasedError):
            await stage.flash_sales.confirm(stage.merchant, "order-1")
        with pytest.raises(HoldReleasedError):  # and a repeat of the reservation says so
            await stage.reserve("buyer", 2, "order-1", retry=True)

        events = await tally(stage)
        assert (events.confirmed_events, events.released_events) == (0, 1)
        status = await audit(stage)
        assert (status.held, status.sold, status.available) == (0, 0, 3)


async def test_a_hold_paid_after_its_time_ran_out_but_before_the_sweeper_came_is_sold(
    make_inventory: InventoryFactory,
) -> None:
    """Payment is judged by whether the units were given back, not by the clock: until the
    sweeper releases a hold its units are still the buyer's, so a late payment sells them."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=3, hold_ttl_seconds=TTL)
        await stage.reserve("buyer", 1, "order-late")
        clock.advance(TTL + 1)

        state = await stage.flash_sales.confirm(stage.merchant, "order-late")
        await stage.flash_sales.sweep()

        assert state is HoldState.CONFIRMED
        assert (await tally(stage)).released_events == 0
        status = await audit(stage)
        assert (status.held, status.sold, status.available) == (0, 1, 2)


async def test_paying_twice_even_at_once_confirms_the_hold_once(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=4)
        await stage.reserve("buyer", 2, "order-1")

        states = await asyncio.gather(
            stage.flash_sales.confirm(stage.merchant, "order-1"),
            stage.flash_sales.confirm(stage.merchant, "order-1"),
        )
        again = await stage.flash_sales.confirm(stage.merchant, "order-1")

        assert [*states, again] == [HoldState.CONFIRMED] * 3
        assert (await tally(stage)).confirmed_events == 1
        status = await audit(stage)
        assert (status.held, status.sold, status.available) == (0, 2, 2)


async def test_cancelling_twice_even_at_once_releases_the_hold_once(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=4)
        await stage.reserve("buyer", 2, "order-1")

        states = await asyncio.gather(
            stage.flash_sales.release(stage.merchant, "order-1", ReleaseReason.CANCELLED),
            stage.flash_sales.release(stage.merchant, "order-1", ReleaseReason.CANCELLED),
        )
        again = await stage.flash_sales.release(stage.merchant, "order-1", ReleaseReason.EXPIRED)

        assert [*states, again] == [HoldState.RELEASED] * 3
        events = await tally(stage)
        assert events.reasons == {"cancelled": 1}
        status = await audit(stage)
        assert (status.held, status.available) == (0, 4)


async def test_a_refund_before_shipping_puts_the_units_and_the_buyers_quota_back_in_the_sale(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=2, per_user_limit=2)
        await stage.reserve("buyer", 2, "order-1")
        await stage.flash_sales.confirm(stage.merchant, "order-1")

        state = await stage.flash_sales.release(stage.merchant, "order-1", ReleaseReason.REFUNDED)
        stage.forget_sold_out()
        again = await stage.reserve("buyer", 2, "order-2")  # the limit counts held units only

        assert state is HoldState.RELEASED
        assert again.reserved
        events = await tally(stage)
        assert events.reasons == {"refunded": 1}
        assert events.returned_by_holds == 0  # back to the sale, not to the SKU
        status = await audit(stage)
        assert (status.held, status.sold, status.available, status.returned) == (2, 0, 0, 0)


async def test_a_sale_is_recorded_sold_out_once_each_time_its_last_units_are_taken(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=3, per_user_limit=2)
        await asyncio.gather(stage.reserve("ann", 1, "order-1"), stage.reserve("bob", 1, "order-2"))
        before = (await tally(stage)).sold_out_sequences
        await stage.reserve("cat", 1, "order-3")
        first = (await tally(stage)).sold_out_sequences
        await stage.flash_sales.release(stage.merchant, "order-2", ReleaseReason.CANCELLED)
        stage.forget_sold_out()
        await stage.reserve("dan", 1, "order-4")

        events = await tally(stage)
        row = await parts.pool.fetchrow(
            "SELECT soldout_seq, sale_version FROM flash_sales WHERE merchant_id = $1"
            " AND sale_id = $2",
            stage.merchant,
            stage.sale.sale_id,
        )
        assert (before, first, events.sold_out_sequences) == ([], [1], [1, 2])
        assert row is not None
        assert (row["soldout_seq"], row["sale_version"]) == (2, 3)  # scheduled, then 2 sold out
        status = await audit(stage)
        assert (status.held, status.available) == (3, 0)


async def test_ending_a_sale_returns_unsold_units_to_the_sku_and_later_releases_follow_them(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=10, received=15, per_user_limit=3)
        await stage.reserve("holder", 2, "order-held")
        await stage.reserve("payer", 3, "order-paid")
        await stage.flash_sales.confirm(stage.merchant, "order-paid")

        ended = await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)
        on_hand_at_end = await stage.on_hand()
        with pytest.raises(SaleNotOpenError):
            await stage.reserve("latecomer")
        cancelled = await stage.flash_sales.release(
            stage.merchant, "order-held", ReleaseReason.CANCELLED
        )
        refunded = await stage.flash_sales.release(
            stage.merchant, "order-paid", ReleaseReason.REFUNDED
        )
        ended_again = await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)

        assert (ended.state, ended.available, ended.returned) == ("ended", 0, 5)
        assert on_hand_at_end == 15 - 10 + 5
        assert cancelled is refunded is HoldState.RELEASED
        events = await tally(stage)
        assert events.state == {"order-held": "returned", "order-paid": "returned"}
        assert (events.ended_events, events.returned_at_end, events.returned_by_holds) == (1, 5, 5)
        assert (ended_again.returned, ended_again.held, ended_again.sold) == (10, 0, 0)
        status = await audit(stage)
        assert status.returned == 10
        assert await stage.on_hand() == 15


async def test_holds_that_run_out_after_the_sale_ended_go_back_to_the_sku(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=6, hold_ttl_seconds=TTL)
        await stage.reserve("buyer-1", 2, "order-1")
        await stage.reserve("buyer-2", 1, "order-2")
        await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)
        clock.advance(TTL + 1)

        await stage.flash_sales.sweep()

        events = await tally(stage)
        assert events.reasons == {"expired": 2}
        assert events.returned_by_holds == 3
        status = await audit(stage)
        assert (status.held, status.returned, status.available) == (0, 6, 0)


async def test_a_hold_released_after_the_window_closed_but_before_the_end_goes_to_the_sku(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, lasts=120, hold_ttl_seconds=600)
        await stage.reserve("buyer", 2, "order-1")
        clock.advance(121)

        await stage.flash_sales.release(stage.merchant, "order-1", ReleaseReason.CANCELLED)
        ended = await stage.flash_sales.end(stage.merchant, stage.sale.sale_id)  # as the timer
        status = await audit(stage)

        assert ended.state == "ended"
        events = await tally(stage)
        assert events.state == {"order-1": "returned"}
        assert (events.returned_by_holds, events.returned_at_end) == (2, 3)
        assert (status.state, status.returned, status.available) == ("ended", 5, 0)


async def test_two_sweepers_at_once_release_each_expired_hold_exactly_once(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as one, make_inventory(clock=clock) as two:
        stage = await stage_sale(one, clock, allocated=40, buckets=4, hold_ttl_seconds=TTL)
        holds = [unique("order") for _ in range(20)]
        for n, hold in enumerate(holds):
            assert (await stage.reserve(f"buyer-{n}", 2, hold)).reserved
        clock.advance(TTL + 1)

        swept = await asyncio.gather(one.flash_sales.sweep(), two.flash_sales.sweep())

        print(f"two sweepers counted {swept} for {len(holds)} expired holds")
        assert sum(swept) >= len(holds)  # other tests' sales in this database may expire too
        events = await tally(stage)
        assert events.reasons == {"expired": len(holds)}
        assert set(events.state.values()) == {"released"}
        status = await audit(stage)
        assert (status.held, status.available) == (0, 40)


async def test_a_release_in_one_replica_reopens_the_sale_where_another_remembered_it_sold_out(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with (
        make_inventory(clock=clock) as parts,
        patient_replica(parts, clock, sold_out_ttl=600) as other,  # only a restock can help
    ):
        stage = await stage_sale(parts, clock, allocated=1)
        await stage.reserve("first", 1, "order-1")
        refused = await stage.reserve("second", via=other)
        remembered = other.sold_out.knows(stage.merchant, stage.sale.sale_id)

        await stage.flash_sales.release(stage.merchant, "order-1", ReleaseReason.CANCELLED)

        async def forgotten() -> bool:
            return not other.sold_out.knows(stage.merchant, stage.sale.sale_id)

        await eventually(forgotten, "the restock announcement")
        again = await stage.reserve("second", via=other)
        assert (refused.reserved, remembered, again.reserved) == (False, True, True)
        await audit(stage)


async def test_a_buyer_asking_for_more_than_is_left_does_not_turn_away_one_asking_for_less(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=3, per_user_limit=2)
        await stage.reserve("first", 2)

        too_many = await stage.reserve("second", 2)
        one = await stage.reserve("third", 1)

        assert (too_many.reserved, too_many.remaining) == (False, 1)
        assert one.reserved
