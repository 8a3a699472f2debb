"""The pure rules of coupons, campaigns and group buys, and the event codec: no I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from livecommerce.promotion.v1 import events_pb2 as pb
from services.kit.errors import InvalidArgumentError
from services.promotion.adapters import codec
from services.promotion.domain.campaigns import (
    Campaign,
    CampaignEndedError,
    CampaignState,
    ScheduleCampaign,
)
from services.promotion.domain.coupons import (
    CouponRedeemed,
    CouponRestored,
    CouponState,
    CouponUnusableError,
    HeldCoupon,
)
from services.promotion.domain.group_buys import (
    AlreadyMemberError,
    Group,
    GroupClosedError,
    GroupCompleted,
    GroupFailed,
    GroupJoined,
    GroupOffer,
    GroupOfferCreated,
    GroupPaymentRejected,
    GroupState,
)
from services.promotion.domain.money import Money
from services.promotion.domain.ordering import OrderLine, PriceOrder

T0 = datetime(2026, 11, 11, 20, 0, tzinfo=UTC)


def _coupon(**changes: object) -> HeldCoupon:
    coupon = HeldCoupon("m1", "c1", "t1", "alice", CouponState.CLAIMED, None, None, 1)
    return dataclasses.replace(coupon, **changes)  # type: ignore[arg-type]


def test_a_coupon_locks_for_one_order_and_the_same_order_gets_the_same_lock() -> None:
    coupon = _coupon()
    locked = coupon.after(coupon.lock("alice", "o1", T0 + timedelta(minutes=15), T0))
    again = locked.lock("alice", "o1", T0 + timedelta(minutes=30), T0 + timedelta(minutes=1))
    assert again.locked_until == T0 + timedelta(minutes=15)
    with pytest.raises(CouponUnusableError, match="locked by another order"):
        locked.lock("alice", "o2", T0 + timedelta(minutes=30), T0 + timedelta(minutes=1))


def test_an_expired_lock_lets_another_order_take_the_coupon() -> None:
    coupon = _coupon()
    locked = coupon.after(coupon.lock("alice", "o1", T0 + timedelta(minutes=15), T0))
    taken = locked.lock("alice", "o2", T0 + timedelta(hours=1), T0 + timedelta(minutes=16))
    assert taken.order_id == "o2"


@pytest.mark.parametrize(
    ("coupon", "words"),
    [
        (_coupon(owner_id="bob"), "not the buyer's"),
        (_coupon(state=CouponState.REDEEMED, order_id="o0"), "has been used"),
    ],
)
def test_a_coupon_is_refused_to_a_buyer_who_cannot_use_it(coupon: HeldCoupon, words: str) -> None:
    with pytest.raises(CouponUnusableError, match=words):
        coupon.lock("alice", "o1", T0 + timedelta(minutes=15), T0)


def test_redeem_release_and_restore_are_idempotent_for_their_order() -> None:
    locked = _coupon(state=CouponState.LOCKED, order_id="o1", locked_until=T0)
    redeemed = locked.after(CouponRedeemed("c1", "o1"))
    assert redeemed.redeem("o1") is None
    assert redeemed.release("o1", "cancelled") is None
    with pytest.raises(CouponUnusableError):
        redeemed.redeem("o2")
    assert redeemed.restore("o1", restore_on_refund=False) is None
    assert redeemed.restore("o1", restore_on_refund=True) == CouponRestored("c1", "o1")
    assert redeemed.after(CouponRestored("c1", "o1")).state is CouponState.CLAIMED


def _campaign(starts: datetime, ends: datetime, sku: str = "S1") -> Campaign:
    command = ScheduleCampaign("m1", "camp1", sku, "r1", 10, starts, ends, 2, Money(900, "CNY"))
    return Campaign("m1", command.event(T0))


def test_a_campaign_is_scheduled_then_live_then_ended_and_can_start_early() -> None:
    campaign = _campaign(T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert campaign.state(T0) is CampaignState.SCHEDULED
    assert campaign.state(T0 + timedelta(hours=1)) is CampaignState.LIVE
    assert campaign.state(T0 + timedelta(hours=2)) is CampaignState.ENDED
    started = campaign.start(T0)
    assert started is not None
    assert campaign.after(started).state(T0) is CampaignState.LIVE
    assert campaign.scheduled.stock_opens_at == T0
    with pytest.raises(CampaignEndedError):
        campaign.start(T0 + timedelta(hours=3))


def test_campaigns_of_one_sku_overlap_when_their_windows_meet_whatever_the_room() -> None:
    campaign = _campaign(T0, T0 + timedelta(hours=1))
    overlapping = _campaign(T0 + timedelta(minutes=59), T0 + timedelta(hours=2)).scheduled
    after = _campaign(T0 + timedelta(hours=1), T0 + timedelta(hours=2)).scheduled
    other_sku = _campaign(T0, T0 + timedelta(hours=1), sku="S2").scheduled
    assert campaign.overlaps(overlapping)
    assert not campaign.overlaps(after)
    assert not campaign.overlaps(other_sku)


def _offer() -> GroupOffer:
    return GroupOffer(
        "m1",
        GroupOfferCreated("o1", "S1", 1990, "CNY", 2, 600, T0, T0 + timedelta(days=1)),
    )


def test_a_group_completes_on_its_last_paid_member_and_never_fails_after() -> None:
    group = Group.opened("m1", _offer().open_group("g1", "ann", T0))
    group = group.after([group.join("bo", T0)])
    group = group.after(group.paid("ann", "o-ann", T0))
    events = group.paid("bo", "o-bo", T0)
    assert events == [GroupJoined("g1", "bo", "o-bo", 2), GroupCompleted("g1", ("o-ann", "o-bo"))]
    group = group.after(events)
    assert group.state is GroupState.COMPLETED
    assert group.expire(T0 + timedelta(hours=1)) is None
    assert group.paid("bo", "o-bo", T0) == []


def test_a_group_short_at_its_deadline_fails_listing_its_orders() -> None:
    group = Group.opened("m1", _offer().open_group("g1", "ann", T0))
    group = group.after(group.paid("ann", "o-ann", T0))
    assert group.expire(T0 + timedelta(seconds=599)) is None
    failed = group.expire(T0 + timedelta(seconds=600))
    assert isinstance(failed, GroupFailed)
    assert failed.order_ids == ("o-ann",)
    with pytest.raises(AlreadyMemberError):
        group.join("ann", T0)
    with pytest.raises(GroupClosedError):
        group.join("cy", T0 + timedelta(seconds=600))


def test_every_domain_event_round_trips_through_its_wire_message() -> None:
    for event_type in codec.DOMAIN_EVENTS:
        message = codec._MESSAGES[event_type]
        assert {f.name for f in dataclasses.fields(event_type)} == set(
            message.DESCRIPTOR.fields_by_name
        ), event_type.__name__
    scheduled = _campaign(T0, T0 + timedelta(hours=1)).scheduled
    assert codec.from_message(codec.to_message(scheduled)) == scheduled
    plain = dataclasses.replace(scheduled, flash_price_minor=None, currency="")
    assert codec.from_message(codec.to_message(plain)) == plain
    assert isinstance(codec.to_message(scheduled), pb.CampaignScheduled)


@pytest.mark.parametrize(
    "order",
    [
        PriceOrder("m1", "alice", ()),
        PriceOrder("m1", "alice", (OrderLine("S1", 1), OrderLine("S1", 2))),
        PriceOrder("m1", "alice", (OrderLine("S1", 0),)),
        PriceOrder("m1", "alice", (OrderLine("S1", 1),), coupon_ids=("c1", "c1")),
        PriceOrder("m1", "alice", (OrderLine("S1", 1),), coupon_ids=tuple("abcdef")),
        PriceOrder("m 1", "alice", (OrderLine("S1", 1),)),
    ],
)
def test_a_malformed_order_is_refused_before_anything_is_looked_up(order: PriceOrder) -> None:
    with pytest.raises(InvalidArgumentError):
        order.validated()


def test_a_payment_for_a_failed_group_that_did_not_list_its_order_fails_it_for_that_order() -> None:
    group = Group.opened("m1", _offer().open_group("g1", "ann", T0))
    group = group.after([group.join("bo", T0)])
    group = group.after(group.paid("ann", "o-ann", T0))
    failed = group.expire(T0 + timedelta(seconds=600))
    assert isinstance(failed, GroupFailed)
    assert failed.order_ids == ("o-ann",)
    group = group.after([failed])
    late = group.paid("bo", "o-bo", T0 + timedelta(seconds=601))
    assert late == [GroupPaymentRejected("g1", "o-bo", "paid after the group failed")]
    group = group.after(late)
    assert group.failed_orders == ("o-ann", "o-bo")
    assert group.paid("bo", "o-bo", T0 + timedelta(seconds=602)) == []
    assert group.paid("ann", "o-ann", T0 + timedelta(seconds=602)) == []
