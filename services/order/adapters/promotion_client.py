"""The promotion service's prices and coupon locks, over gRPC (promotion.v1)."""

from __future__ import annotations

import grpc

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1.promotion_pb2_grpc import PromotionServiceStub
from services.kit.errors import UnavailableError
from services.kit.grpc_errors import error_from_rpc
from services.kit.wire import timestamp
from services.order.application.ports import PricedLine, PricedOrder, PriceOrderQuery
from services.order.domain.order import Totals

CALLEE = "promotion"

_KINDS = {
    pb.PROMOTION_KIND_FLASH_SALE: "flash_sale",
    pb.PROMOTION_KIND_GROUP_BUY: "group_buy",
    pb.PROMOTION_KIND_ROOM_SPECIAL: "room_special",
    pb.PROMOTION_KIND_STORE_DISCOUNT: "store_discount",
}


class GrpcPricing:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float = 5.0) -> None:
        self._stub = PromotionServiceStub(channel)
        self._timeout = timeout_seconds

    async def price_order(self, query: PriceOrderQuery) -> PricedOrder:
        request = pb.PriceOrderRequest(
            merchant_id=query.merchant_id,
            buyer_id=query.buyer_id,
            room_id=query.room_id,
            channel=query.channel,
            group_id=query.group_id,
            lines=[pb.PriceOrderLine(sku_id=sku, quantity=qty) for sku, qty in query.lines],
            coupon_ids=list(query.coupon_ids),
            order_id=query.order_id,
        )
        request.lock_until.CopyFrom(timestamp(query.lock_until))
        try:
            reply = await self._stub.PriceOrder(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, CALLEE) from error
        return priced_from_proto(reply)

    async def release_coupons(self, merchant_id: str, order_id: str) -> None:
        try:
            await self._stub.ReleaseCoupons(
                pb.ReleaseCouponsRequest(merchant_id=merchant_id, order_id=order_id),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, CALLEE) from error


def priced_from_proto(reply: pb.PriceOrderReply) -> PricedOrder:
    """The priced order; a reply that breaks the contract (not one sale per line) means the
    callee misbehaves: UNAVAILABLE for our caller, never a 500."""
    quote = reply.quote
    if len(reply.sale_ids) != len(quote.lines):
        raise UnavailableError(
            f"{CALLEE} answered {len(quote.lines)} priced lines with {len(reply.sale_ids)} sales"
        )
    lines = tuple(
        PricedLine(
            sku_id=line.sku_id,
            quantity=line.quantity,
            sale_id=sale_id,
            list_unit_price=line.list_unit_price.amount_minor,
            unit_price=line.unit_price.amount_minor,
            promotion_discount=line.promotion_discount.amount_minor,
            coupon_share=line.coupon_share.amount_minor,
            total=line.total.amount_minor,
            promotion_kind=_KINDS.get(line.promotion.kind, "")
            if line.HasField("promotion")
            else "",
            promotion_id=line.promotion.promotion_id if line.HasField("promotion") else "",
        )
        for line, sale_id in zip(quote.lines, reply.sale_ids, strict=True)
    )
    return PricedOrder(
        currency=quote.currency,
        lines=lines,
        totals=Totals(
            subtotal=quote.subtotal.amount_minor,
            promotion_discount=quote.promotion_discount.amount_minor,
            coupon_discount=quote.coupon_discount.amount_minor,
            shipping_fee=quote.shipping_fee.amount_minor,
            shipping_discount=quote.shipping_discount.amount_minor,
            total=quote.total.amount_minor,
        ),
        locked_coupon_ids=tuple(reply.locked_coupon_ids),
        explanation=tuple(quote.explanation),
    )
