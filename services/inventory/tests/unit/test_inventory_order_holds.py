"""Releasing an order's holds: the use case over a fake, and the hold aggregate's rules for
giving back units of a hold that was paid for."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from services.inventory.application.orders import ReleaseOrderHolds, release_order_holds
from services.inventory.domain.sale import (
    Hold,
    HoldNotFoundError,
    HoldState,
    ReleaseReason,
    ReservationConfirmed,
    ReservationReleased,
    StockReserved,
)
from services.kit.tenancy import validate_id


@dataclass
class FakeHolds:
    """Knows some holds; releasing one twice changes nothing, as FlashSales does."""

    known: set[str]
    released: dict[str, ReleaseReason] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    outage: bool = False

    async def release(self, merchant_id: str, hold_id: str, reason: ReleaseReason) -> HoldState:
        self.calls.append(hold_id)
        validate_id(hold_id, "hold id")
        if self.outage:
            raise ConnectionError("the database went away")
        if hold_id not in self.known:
            raise HoldNotFoundError(f"hold {hold_id} not found")
        self.released.setdefault(hold_id, reason)
        return HoldState.RELEASED


def command(*hold_ids: str, reason: ReleaseReason = ReleaseReason.CANCELLED) -> ReleaseOrderHolds:
    return ReleaseOrderHolds("m1", "order-1", hold_ids, reason)


async def test_every_hold_of_the_order_is_released_with_the_reason_given() -> None:
    holds = FakeHolds({"order-1", "order-1-2"})

    result = await release_order_holds(
        command("order-1", "order-1-2", reason=ReleaseReason.REFUNDED), holds
    )

    assert result.released == ("order-1", "order-1-2")
    assert result.skipped == ()
    assert holds.released == {
        "order-1": ReleaseReason.REFUNDED,
        "order-1-2": ReleaseReason.REFUNDED,
    }


async def test_unknown_and_malformed_holds_are_skipped_and_the_others_still_released() -> None:
    holds = FakeHolds({"order-1", "order-1-3"})

    result = await release_order_holds(
        command("no-such-hold", "order-1", "bad id", "order-1-3"), holds
    )

    assert result.released == ("order-1", "order-1-3")
    assert result.skipped == ("no-such-hold", "bad id")
    assert set(holds.released) == {"order-1", "order-1-3"}


async def test_empty_and_repeated_hold_ids_are_asked_for_once_or_not_at_all() -> None:
    holds = FakeHolds({"order-1"})

    result = await release_order_holds(command("", "order-1", "order-1", ""), holds)

    assert holds.calls == ["order-1"]
    assert result.released == ("order-1",)


async def test_an_outage_is_raised_so_that_the_consumer_retries_the_event() -> None:
    holds = FakeHolds({"order-1"}, outage=True)

    with pytest.raises(ConnectionError):
        await release_order_holds(command("order-1"), holds)


def paid_hold() -> Hold:
    reserved = StockReserved(
        hold_id="order-1",
        sale_id="sale-1",
        sku_id="SKU-1",
        user_id="buyer-1",
        quantity=2,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        bucket=0,
        home_bucket=0,
        epoch=1,
    )
    confirmed = ReservationConfirmed("order-1", "sale-1", "SKU-1", 2)
    return Hold.replay("m1", "order-1", [reserved, confirmed])


def test_a_paid_hold_refunded_before_shipping_gives_all_its_units_back() -> None:
    hold = paid_hold()

    event = hold.release(ReleaseReason.REFUNDED, sale_ended=False)

    assert hold.state is HoldState.CONFIRMED
    assert event == ReservationReleased(
        "order-1", "sale-1", "SKU-1", 2, ReleaseReason.REFUNDED, returned_to_sku=False
    )
    assert event is not None
    assert hold.apply(event).state is HoldState.RELEASED


def test_releasing_a_refunded_hold_again_changes_nothing() -> None:
    hold = paid_hold()
    event = hold.release(ReleaseReason.REFUNDED, sale_ended=True)
    assert event is not None

    assert hold.apply(event).release(ReleaseReason.REFUNDED, sale_ended=True) is None
