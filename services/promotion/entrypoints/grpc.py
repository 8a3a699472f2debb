"""Promotion's gRPC API for other services: the pure quote, PriceOrder and ReleaseCoupons
for the order service's checkout, StartCampaign and StopCampaign for the room service."""

from __future__ import annotations

import asyncio

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1 import promotion_pb2_grpc
from services.kit.grpc import Context, current_caller, start_grpc_server
from services.kit.identity import Role, TokenVerifier
from services.kit.metrics import serve_metrics
from services.kit.wire import timestamp
from services.promotion.adapters.protobuf import (
    money_to_proto,
    quote_to_proto,
    request_from_proto,
    rules_from_proto,
    timestamp_from_proto,
)
from services.promotion.bootstrap import Promotion, promotion
from services.promotion.domain.campaigns import Campaign
from services.promotion.domain.ordering import OrderLine, PriceOrder
from services.promotion.domain.quote import quote
from services.promotion.settings import PromotionSettings

QUOTE_ROLES = (Role.SERVICE, Role.OPS, Role.MERCHANT_ADMIN, Role.OPERATOR)
ORDER_ROLES = (Role.SERVICE, Role.OPS)
CAMPAIGN_ROLES = (Role.SERVICE, Role.OPS, Role.MERCHANT_ADMIN, Role.OPERATOR, Role.HOST)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PromotionService"].full_name


def campaign_to_proto(campaign: Campaign, state: str) -> pb.Campaign:
    s = campaign.scheduled
    message = pb.Campaign(
        campaign_id=s.campaign_id,
        sku_id=s.sku_id,
        room_id=s.room_id,
        state=state,
        quantity=s.quantity,
        per_user_limit=s.per_user_limit,
        starts_at=timestamp(campaign.live_from),
        ends_at=timestamp(s.ends_at),
    )
    if campaign.flash_price is not None:
        message.flash_price.CopyFrom(money_to_proto(campaign.flash_price))
    return message


class QuoteServicer(promotion_pb2_grpc.PromotionServiceServicer):
    """The pure quote: needs no store. The other calls answer UNIMPLEMENTED here (the
    generated base class's behaviour, which its type stubs declare abstract)."""

    async def Quote(self, request: pb.QuoteRequest, context: Context) -> pb.QuoteReply:
        caller = current_caller()
        caller.require_role(*QUOTE_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"merchant {request.merchant_id}")
        result = quote(request_from_proto(request, merchant_id), rules_from_proto(request))
        return quote_to_proto(result)


class PromotionServicer(QuoteServicer):
    def __init__(self, parts: Promotion) -> None:
        self._parts = parts

    async def PriceOrder(
        self, request: pb.PriceOrderRequest, context: Context
    ) -> pb.PriceOrderReply:
        caller = current_caller()
        caller.require_role(*ORDER_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"merchant {request.merchant_id}")
        priced = await self._parts.pricing.price_order(
            PriceOrder(
                merchant_id=merchant_id,
                buyer_id=request.buyer_id,
                lines=tuple(OrderLine(line.sku_id, line.quantity) for line in request.lines),
                room_id=request.room_id or None,
                channel=request.channel,
                group_id=request.group_id or None,
                coupon_ids=tuple(request.coupon_ids),
                order_id=request.order_id or None,
                lock_until=(
                    timestamp_from_proto(request.lock_until, "lock_until")
                    if request.HasField("lock_until")
                    else None
                ),
            )
        )
        return pb.PriceOrderReply(
            quote=quote_to_proto(priced.quote),
            sale_ids=list(priced.sale_ids),
            locked_coupon_ids=list(priced.locked_coupon_ids),
        )

    async def ReleaseCoupons(
        self, request: pb.ReleaseCouponsRequest, context: Context
    ) -> pb.ReleaseCouponsReply:
        caller = current_caller()
        caller.require_role(*ORDER_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"order {request.order_id}")
        released = await self._parts.coupons.release_for(merchant_id, request.order_id)
        return pb.ReleaseCouponsReply(released_coupon_ids=list(released))

    async def StartCampaign(self, request: pb.CampaignRequest, context: Context) -> pb.Campaign:
        merchant_id = self._campaign_caller(request)
        campaign = await self._parts.campaigns.start(
            merchant_id, request.campaign_id, room_id=request.room_id
        )
        return self._campaign(campaign)

    async def StopCampaign(self, request: pb.CampaignRequest, context: Context) -> pb.Campaign:
        merchant_id = self._campaign_caller(request)
        campaign = await self._parts.campaigns.stop(
            merchant_id, request.campaign_id, room_id=request.room_id
        )
        return self._campaign(campaign)

    def _campaign_caller(self, request: pb.CampaignRequest) -> str:
        caller = current_caller()
        caller.require_role(*CAMPAIGN_ROLES)
        return caller.acting_for(request.merchant_id, f"campaign {request.campaign_id}")

    def _campaign(self, campaign: Campaign) -> pb.Campaign:
        return campaign_to_proto(campaign, campaign.state(self._parts.campaigns.now()))


async def serve_grpc(settings: PromotionSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    async with promotion(settings) as parts:
        servicer = PromotionServicer(parts)
        server, _ = await start_grpc_server(
            service=settings.service_name,
            address=f"{settings.grpc_host}:{settings.grpc_port}",
            verifier=TokenVerifier(settings),
            register=lambda s: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(
                servicer, s
            ),
            service_names=[SERVICE_NAME],
            max_message_bytes=settings.grpc_max_message_bytes,
        )
        await stop.wait()
        await server.stop(grace=5)
