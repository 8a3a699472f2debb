"""Bad input to the flash-sale use cases is refused with the error that names it and changes
nothing: not the sale's counts, not Redis, not the SKU, not the event store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from services.inventory.adapters.redis_stock import home_bucket
from services.inventory.application.flash_sales import Reservation, SaleStatus
from services.inventory.domain.sale import (
    AllocateToSale,
    HoldConflictError,
    HoldNotFoundError,
    PerUserLimitError,
    ReleaseReason,
    ReserveStock,
    SaleExistsError,
    SaleNotFoundError,
)
from services.inventory.domain.stock import (
    InsufficientStockError,
    InvalidQuantityError,
    SkuNotFoundError,
)
from services.inventory.tests.conftest import Clock, InventoryFactory
from services.inventory.tests.flash_helpers import Stage, audit, events_of, stage_sale
from services.kit.errors import InvalidArgumentError, KitError
from services.kit.testing import unique


async def unchanged_by(stage: Stage, refused: list[Callable[[], Awaitable[object]]]) -> None:
    """Each call is refused with a KitError, and the books are as they were before."""
    before = await audit(stage)
    events = len(await events_of(stage.parts.pool, stage.merchant))
    on_hand = await stage.on_hand()
    for call in refused:
        with pytest.raises(KitError):
            await call()
    after: SaleStatus = await audit(stage)
    assert (after.available, after.held, after.sold, after.returned) == (
        before.available,
        before.held,
        before.sold,
        before.returned,
    )
    assert len(await events_of(stage.parts.pool, stage.merchant)) == events
    assert await stage.on_hand() == on_hand


@pytest.mark.parametrize("quantity", [0, -1, 3, 1001])
async def test_a_quantity_outside_one_to_the_per_user_limit_is_invalid_and_changes_nothing(
    make_inventory: InventoryFactory, quantity: int
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, per_user_limit=2)
        await stage.reserve("buyer", 1, "order-1")

        with pytest.raises(InvalidQuantityError):
            await stage.reserve("buyer", quantity)
        with pytest.raises(InvalidQuantityError):  # the sold-out memory is no way round it
            await stage.reserve("buyer", quantity, retry=True)
        await unchanged_by(stage, [lambda: stage.reserve("buyer", quantity)])


async def test_a_buyer_at_the_per_user_limit_is_refused_and_changes_nothing(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, per_user_limit=2, buckets=2)
        await stage.reserve("buyer", 1, "order-1")
        await stage.reserve("buyer", 1, "order-2")

        with pytest.raises(PerUserLimitError):
            await stage.reserve("buyer", 1, "order-3")
        await unchanged_by(stage, [lambda: stage.reserve("buyer", 1, "order-4")])


async def test_a_reservation_in_an_unknown_or_another_merchants_sale_is_not_found(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5)
        stranger = ReserveStock(unique("merchant"), stage.sale.sale_id, "buyer", 1, "order-x")

        with pytest.raises(SaleNotFoundError):
            await stage.flash_sales.reserve(stage.command("buyer", sale_id="no-such-sale"))
        with pytest.raises(SaleNotFoundError):
            await stage.flash_sales.reserve(stranger)
        await unchanged_by(
            stage,
            [
                lambda: stage.flash_sales.reserve(stage.command("b", sale_id="no-such-sale")),
                lambda: stage.flash_sales.reserve(stranger),
            ],
        )


@pytest.mark.parametrize("buckets", [1, 4], ids=["one-bucket", "four-buckets"])
async def test_a_hold_id_reused_with_another_user_or_quantity_conflicts_and_changes_nothing(
    make_inventory: InventoryFactory, buckets: int
) -> None:
    """With buckets the other user's home bucket may not know the hold id: Redis grants it
    there, the group commit refuses it, and the units are given back."""
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=8, per_user_limit=2, buckets=buckets)
        await stage.reserve("buyer-1", 2, "order-1")
        others = [f"buyer-{n}" for n in range(2, 6)]  # some live in other buckets

        for other in others:
            with pytest.raises(HoldConflictError):
                await stage.reserve(other, 2, "order-1")
        with pytest.raises(HoldConflictError):
            await stage.reserve("buyer-1", 1, "order-1")
        await unchanged_by(stage, [lambda: stage.reserve("buyer-1", 1, "order-1", retry=True)])


async def refusal_or_answer(call: Callable[[], Awaitable[Reservation]]) -> object:
    try:
        return await call()
    except KitError as error:
        return error


@pytest.mark.parametrize("where", ["another-bucket", "another-sale"])
async def test_a_hold_id_taken_by_another_buyer_stays_refused_when_the_request_is_repeated(
    make_inventory: InventoryFactory, where: str
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=8, received=12, buckets=4)
        owner = "buyer-0"
        await stage.reserve(owner, 2, "order-1")
        if where == "another-sale":
            other = await stage.flash_sales.schedule(allocate(stage, quantity=4, per_user_limit=2))
            stage = replace(stage, sale=other)
            intruder = owner
        else:
            owner_home = home_bucket(owner, 4)
            intruder = next(
                u for u in (f"buyer-{n}" for n in range(1, 100)) if home_bucket(u, 4) != owner_home
            )

        first = await refusal_or_answer(lambda: stage.reserve(intruder, 2, "order-1"))
        again = await refusal_or_answer(lambda: stage.reserve(intruder, 2, "order-1", retry=True))

        assert isinstance(first, HoldConflictError)
        assert isinstance(again, HoldConflictError), again


@pytest.mark.parametrize(
    "field",
    ["merchant", "sale", "user", "hold"],
)
@pytest.mark.parametrize("bad", ["two words", "x" * 65, ""], ids=["space", "too-long", "empty"])
async def test_a_malformed_id_in_a_reservation_is_invalid_and_changes_nothing(
    make_inventory: InventoryFactory, field: str, bad: str
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5)
        good = stage.command("buyer", 1, "order-1")
        command = ReserveStock(
            merchant_id=bad if field == "merchant" else good.merchant_id,
            sale_id=bad if field == "sale" else good.sale_id,
            user_id=bad if field == "user" else good.user_id,
            quantity=1,
            hold_id=bad if field == "hold" else good.hold_id,
        )

        with pytest.raises(InvalidArgumentError):
            await stage.flash_sales.reserve(command)
        await unchanged_by(stage, [lambda: stage.flash_sales.reserve(command)])


async def test_confirming_or_releasing_an_unknown_or_malformed_hold_is_refused(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5)
        await stage.reserve("buyer", 1, "order-1")
        sales, merchant = stage.flash_sales, stage.merchant

        with pytest.raises(HoldNotFoundError):
            await sales.confirm(merchant, "no-such-order")
        with pytest.raises(HoldNotFoundError):
            await sales.release(merchant, "no-such-order", ReleaseReason.CANCELLED)
        with pytest.raises(HoldNotFoundError):  # another merchant's hold is not found
            await sales.confirm(unique("merchant"), "order-1")
        with pytest.raises(InvalidArgumentError):
            await sales.confirm(merchant, "order 1")
        with pytest.raises(InvalidArgumentError):
            await sales.release(merchant, "x" * 65, ReleaseReason.CANCELLED)
        await unchanged_by(
            stage,
            [
                lambda: sales.confirm(merchant, "no-such-order"),
                lambda: sales.release(merchant, "order 1", ReleaseReason.CANCELLED),
            ],
        )


def allocate(stage: Stage, **changes: Any) -> AllocateToSale:
    now = stage.clock()
    valid = AllocateToSale(
        merchant_id=stage.merchant,
        sale_id=unique("sale"),
        sku_id=stage.sku,
        quantity=2,
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        per_user_limit=1,
        hold_ttl_seconds=60,
        buckets=1,
    )
    return replace(valid, **changes)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"quantity": 6}, InsufficientStockError),  # 5 on hand besides the first sale's
        ({"quantity": 0}, InvalidQuantityError),
        ({"sku_id": "NO-SUCH-SKU"}, SkuNotFoundError),
        ({"sku_id": "two words"}, InvalidArgumentError),
        ({"sale_id": "x" * 65}, InvalidArgumentError),
        ({"window": "past"}, InvalidArgumentError),
        ({"window": "backwards"}, InvalidArgumentError),
        ({"per_user_limit": 0}, InvalidArgumentError),
        ({"per_user_limit": 1001}, InvalidArgumentError),
        ({"hold_ttl_seconds": 4}, InvalidArgumentError),
        ({"buckets": 3}, InvalidArgumentError),  # more buckets than its 2 units
        ({"buckets": 0}, InvalidArgumentError),
    ],
    ids=[
        "more-than-on-hand",
        "no-units",
        "unknown-sku",
        "malformed-sku",
        "malformed-sale-id",
        "window-in-the-past",
        "end-before-start",
        "limit-zero",
        "limit-above-max",
        "ttl-too-short",
        "more-buckets-than-units",
        "no-buckets",
    ],
)
async def test_scheduling_a_bad_sale_is_refused_and_sets_nothing_aside(
    make_inventory: InventoryFactory, changes: dict[str, Any], error: type[KitError]
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, received=10)
        now = clock()
        changes = dict(changes)
        window = changes.pop("window", None)
        if window == "past":
            changes.update(starts_at=now - timedelta(hours=2), ends_at=now - timedelta(hours=1))
        elif window == "backwards":
            changes.update(starts_at=now + timedelta(hours=1), ends_at=now)
        command = allocate(stage, **changes)

        with pytest.raises(error):
            await stage.flash_sales.schedule(command)
        await unchanged_by(stage, [lambda: stage.flash_sales.schedule(command)])
        assert (
            await parts.pool.fetchval(
                "SELECT count(*) FROM flash_sales WHERE merchant_id = $1", stage.merchant
            )
            == 1
        )


async def test_scheduling_the_same_sale_id_twice_is_refused_and_sets_nothing_more_aside(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, received=10)
        again = allocate(stage, sale_id=stage.sale.sale_id, quantity=1)

        with pytest.raises(SaleExistsError):
            await stage.flash_sales.schedule(again)
        await unchanged_by(stage, [lambda: stage.flash_sales.schedule(again)])
        assert (await stage.status()).allocated == 5


async def test_scheduling_the_same_sale_again_returns_it_and_keeps_its_redis_state(
    make_inventory: InventoryFactory,
) -> None:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        stage = await stage_sale(parts, clock, allocated=5, received=10)
        await stage.reserve("buyer", 1, "order-1")
        epoch = (await stage.parts.ledger.sale(stage.merchant, stage.sale.sale_id))[1].epoch
        events = len(await events_of(parts.pool, stage.merchant))

        sale = stage.sale
        again = await stage.flash_sales.schedule(
            allocate(
                stage,
                sale_id=sale.sale_id,
                quantity=5,
                starts_at=sale.starts_at,
                ends_at=sale.ends_at,
                per_user_limit=2,
            )
        )

        assert again == sale
        assert (await stage.status()).allocated == 5
        assert await stage.on_hand() == 5
        assert len(await events_of(parts.pool, stage.merchant)) == events
        after = (await stage.parts.ledger.sale(stage.merchant, stage.sale.sale_id))[1]
        assert after.epoch == epoch  # Redis was not rebuilt under the live sale
        assert await stage.flash_sales.reconcile([stage.sale]) == []
