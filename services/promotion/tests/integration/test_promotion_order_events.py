"""The worker's reactions to order.events on the real Postgres, through the kernel's inbox:
OrderPaid redeems the coupons and counts the group member, OrderCancelled releases the
coupons, a full OrderRefunded restores them when the template says so; a redelivered event
changes nothing."""

from __future__ import annotations

from typing import Any, cast
from uuid import uuid4

from google.protobuf.message import Message

from livecommerce.kit.v1.envelope_pb2 import Envelope
from livecommerce.order.v1 import events_pb2 as order_pb
from services.kit.consumer import ConsumedEvent, ConsumerRunner
from services.kit.testing import unique
from services.promotion.application.order_events import order_event_handlers
from services.promotion.bootstrap import Promotion
from services.promotion.domain.coupons import ClaimCoupon, CouponState
from services.promotion.tests.conftest import PromotionFactory
from services.promotion.tests.helpers import fixed_template, now


def _event(merchant: str, message: Message) -> ConsumedEvent:
    envelope = Envelope(
        event_id=str(uuid4()),
        event_type=message.DESCRIPTOR.full_name,
        merchant_id=merchant,
        payload=message.SerializeToString(),
    )
    envelope.occurred_at.FromDatetime(now())
    return ConsumedEvent(envelope, "order.events", 0, 0)


class Orders:
    def __init__(self, parts: Promotion) -> None:
        self.handlers = order_event_handlers(parts.coupons, parts.groups)
        self.runner = ConsumerRunner(
            name=unique("consumer"),
            consumer=cast(Any, None),
            dead_letters=cast(Any, None),
            pool=parts.pool,
            handlers=self.handlers,
        )

    async def deliver(self, event: ConsumedEvent) -> str:
        return await self.runner.apply(self.handlers[event.event_type], event)


async def _locked_coupon(parts: Promotion, merchant: str, order_id: str, **template: Any) -> str:
    tpl = await fixed_template(parts, merchant, **template)
    coupon = unique("cp")
    await parts.coupons.claim(ClaimCoupon(merchant, tpl.template_id, "alice", coupon))
    async with parts.coupon_ledger.transaction() as conn:
        await parts.coupons.lock_for_order(
            conn, merchant, "alice", order_id, [coupon], now().replace(year=now().year + 1)
        )
    return coupon


async def _state(parts: Promotion, merchant: str, coupon: str) -> CouponState:
    return (await parts.coupons.held(merchant, [coupon]))[0].state


async def test_order_paid_redeems_and_a_full_refund_restores_when_the_template_says_so(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        orders = Orders(parts)
        restoring = await _locked_coupon(parts, merchant, "o-1", restore_on_refund=True)
        paid = _event(
            merchant, order_pb.OrderPaid(order_id="o-1", buyer_id="alice", coupon_ids=[restoring])
        )
        assert await orders.deliver(paid) == "applied"
        assert await orders.deliver(paid) == "duplicate"
        assert await _state(parts, merchant, restoring) is CouponState.REDEEMED

        partial = order_pb.OrderRefunded(order_id="o-1", coupon_ids=[restoring], full=False)
        await orders.deliver(_event(merchant, partial))
        assert await _state(parts, merchant, restoring) is CouponState.REDEEMED
        full = order_pb.OrderRefunded(order_id="o-1", coupon_ids=[restoring], full=True)
        await orders.deliver(_event(merchant, full))
        assert await _state(parts, merchant, restoring) is CouponState.CLAIMED


async def test_a_full_refund_keeps_a_coupon_used_when_its_template_does_not_restore(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        orders = Orders(parts)
        coupon = await _locked_coupon(parts, merchant, "o-1", restore_on_refund=False)
        await orders.deliver(
            _event(merchant, order_pb.OrderPaid(order_id="o-1", coupon_ids=[coupon]))
        )
        await orders.deliver(
            _event(merchant, order_pb.OrderRefunded(order_id="o-1", coupon_ids=[coupon], full=True))
        )
        assert await _state(parts, merchant, coupon) is CouponState.REDEEMED


async def test_order_cancelled_releases_the_coupons_the_order_locked(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        orders = Orders(parts)
        coupon = await _locked_coupon(parts, merchant, "o-1")
        cancelled = order_pb.OrderCancelled(order_id="o-1", coupon_ids=[coupon], reason="buyer")
        await orders.deliver(_event(merchant, cancelled))
        assert await _state(parts, merchant, coupon) is CouponState.CLAIMED
        events = await parts.pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1", f"coupon:{merchant}:{coupon}"
        )
        await orders.deliver(_event(merchant, cancelled))
        assert events == await parts.pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1", f"coupon:{merchant}:{coupon}"
        )
