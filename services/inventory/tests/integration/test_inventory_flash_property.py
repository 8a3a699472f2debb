"""Random runs of a flash sale's operations (reserve, repeat, confirm, cancel, refund, let
holds run out and sweep, rebuild Redis, lose Redis, end) against a model of what each
should do: after every step the service answers as the model says, its counts are the
model's, units are conserved, and Redis agrees with the event store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.inventory.application.flash_sales import Reservation
from services.inventory.bootstrap import Inventory, inventory
from services.inventory.domain.sale import (
    HoldReleasedError,
    HoldState,
    ReleaseReason,
)
from services.inventory.settings import InventorySettings
from services.inventory.tests.conftest import Clock
from services.inventory.tests.flash_helpers import Stage, audit, stage_sale
from services.kit.errors import KitError

TTL = 60
LIMIT = 2
USERS = 4


# -- operations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reserve:
    user: int
    quantity: int  # 1..LIMIT+1: one above the limit is invalid
    pick: int | None  # None: a new hold id; else repeat the live hold at this index
    conflicting: bool  # a repeat with another quantity


@dataclass(frozen=True)
class Confirm:
    pick: int


@dataclass(frozen=True)
class Release:
    pick: int
    reason: ReleaseReason


@dataclass(frozen=True)
class Expire:
    seconds: int


@dataclass(frozen=True)
class Rebuild:
    pass


@dataclass(frozen=True)
class LoseRedis:
    pass


@dataclass(frozen=True)
class End:
    pass


Op = Reserve | Confirm | Release | Expire | Rebuild | LoseRedis | End

picks = st.integers(0, 40)
reserves = st.builds(
    Reserve,
    user=st.integers(0, USERS - 1),
    quantity=st.integers(1, LIMIT + 1),
    pick=st.none() | picks,
    conflicting=st.booleans(),
)
operations: st.SearchStrategy[Op] = st.one_of(
    reserves,
    reserves,
    reserves,
    st.builds(Confirm, pick=picks),
    st.builds(
        Release,
        pick=picks,
        reason=st.sampled_from([ReleaseReason.CANCELLED, ReleaseReason.REFUNDED]),
    ),
    st.builds(Expire, seconds=st.sampled_from([25, 65])),
    st.just(Rebuild()),
    st.just(LoseRedis()),
    st.just(End()),
)


# -- the model -------------------------------------------------------------------------------


@dataclass
class ModelHold:
    hold_id: str
    user: str
    quantity: int
    state: str  # held | confirmed | released | returned
    reserved_at: int  # the clock offset (seconds) it was reserved at


@dataclass
class Model:
    allocated: int
    buckets: int
    offset: int = 0
    ended: bool = False
    returned_at_end: int = 0
    holds: list[ModelHold] = field(default_factory=list)

    def units(self, *states: str) -> int:
        return sum(h.quantity for h in self.holds if h.state in states)

    @property
    def returned(self) -> int:
        return self.returned_at_end + self.units("returned")

    @property
    def available(self) -> int:
        return self.allocated - self.units("held", "confirmed") - self.returned

    def used(self, user: str) -> int:
        return sum(
            h.quantity for h in self.holds if h.user == user and h.state in ("held", "confirmed")
        )

    def live(self) -> list[ModelHold]:
        return [h for h in self.holds if h.state in ("held", "confirmed")]

    def pick(self, index: int) -> ModelHold | None:
        return self.holds[index % len(self.holds)] if self.holds else None

    def release(self, hold: ModelHold) -> None:
        hold.state = "returned" if self.ended else "released"


# -- running a step against the service and the model -------------------------------------


async def outcome_of(call: Awaitable[object]) -> object:
    try:
        return await call
    except KitError as error:
        return error


def answer(found: object) -> str:
    if isinstance(found, Reservation):
        return "reserved" if found.reserved else "sold out"
    return type(found).__name__


async def step(stage: Stage, model: Model, op: Op, number: int) -> None:
    sales = stage.flash_sales
    if isinstance(op, Reserve):
        await reserve(stage, model, op, number)
    elif isinstance(op, Confirm):
        hold = model.pick(op.pick)
        if hold is None:
            return
        found = await outcome_of(sales.confirm(stage.merchant, hold.hold_id))
        if hold.state in ("held", "confirmed"):
            assert found is HoldState.CONFIRMED, (op, found)
            hold.state = "confirmed"
        else:
            assert isinstance(found, HoldReleasedError), (op, found)
    elif isinstance(op, Release):
        hold = model.pick(op.pick)
        if hold is None:
            return
        found = await outcome_of(sales.release(stage.merchant, hold.hold_id, op.reason))
        assert found is HoldState.RELEASED, (op, found)
        if hold.state in ("held", "confirmed"):
            model.release(hold)
    elif isinstance(op, Expire):
        stage.clock.advance(op.seconds)
        model.offset += op.seconds
        await sales.sweep()  # it rebuilds a sale Redis lost before reading its expiries
        for hold in model.holds:
            if hold.state == "held" and model.offset - hold.reserved_at >= TTL:
                model.release(hold)
    elif isinstance(op, Rebuild):
        assert await sales.rebuild(stage.sale, force=True)
    elif isinstance(op, LoseRedis):
        await stage.lose_redis()
    else:
        ended = await sales.end(stage.merchant, stage.sale.sale_id)
        if not model.ended:
            model.returned_at_end = model.available
            model.ended = True
        assert ended.state == "ended"


async def reserve(stage: Stage, model: Model, op: Reserve, number: int) -> None:
    user = f"user-{op.user}"
    live = model.live()
    repeat = live[op.pick % len(live)] if op.pick is not None and live else None
    if repeat is not None:
        user = repeat.user
        quantity = repeat.quantity % LIMIT + 1 if op.conflicting else repeat.quantity
        hold_id = repeat.hold_id
    else:
        quantity, hold_id = op.quantity, f"order-{number}"
    found = await outcome_of(stage.reserve(user, quantity, hold_id, retry=True))

    said = answer(found)
    if quantity > LIMIT:
        assert said == "InvalidQuantityError", (op, found)
    elif repeat is not None:
        assert said == ("HoldConflictError" if op.conflicting else "reserved"), (op, found)
    elif model.ended:
        assert said == "SaleNotOpenError", (op, found)
    elif model.used(user) + quantity > LIMIT:
        assert said == "PerUserLimitError", (op, found)
    elif model.available < quantity:
        assert said == "sold out", (op, found)
    elif model.buckets == 1 or quantity == 1:
        assert said == "reserved", (op, found)
    else:  # with buckets, a hold of 2 needs 2 in one bucket: the units may be split
        assert said in ("reserved", "sold out"), (op, found)
    if isinstance(found, Reservation) and found.reserved and repeat is None:
        model.holds.append(ModelHold(hold_id, user, quantity, "held", model.offset))


async def agrees(stage: Stage, model: Model, op: Op) -> None:
    status = await stage.status()
    assert status.allocated == status.available + status.held + status.sold + status.returned
    assert (status.held, status.sold, status.returned, status.available) == (
        model.units("held"),
        model.units("confirmed"),
        model.returned,
        model.available,
    ), (op, status, model)
    assert await stage.flash_sales.reconcile([stage.sale]) == [], op


# -- the test ----------------------------------------------------------------------------------


@dataclass
class Shared:
    parts: Inventory
    clock: Clock


@pytest_asyncio.fixture(scope="module")
async def shared(inventory_settings: InventorySettings) -> AsyncIterator[Shared]:
    """One service for every example (a fresh sale each): building it per example would
    cost more than the example."""
    clock = Clock()
    async with inventory(inventory_settings, clock=clock) as parts:
        yield Shared(parts, clock)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    allocated=st.integers(1, 8),
    buckets=st.sampled_from([1, 2]),
    ops=st.lists(operations, max_size=30),
)
async def test_any_run_of_operations_keeps_the_sale_as_the_model_says_and_redis_in_agreement(
    shared: Shared, allocated: int, buckets: int, ops: list[Op]
) -> None:
    buckets = min(buckets, allocated)
    stage = await stage_sale(
        shared.parts,
        shared.clock,
        allocated=allocated,
        per_user_limit=LIMIT,
        buckets=buckets,
        hold_ttl_seconds=TTL,
        lasts=24 * 3600,
    )
    model = Model(allocated, buckets)

    for number, op in enumerate(ops):
        await step(stage, model, op, number)
        await agrees(stage, model, op)

    await audit(stage)
