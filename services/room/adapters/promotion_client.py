"""Promotion's flash-sale campaigns over gRPC (promotion.v1 StartCampaign/StopCampaign)."""

from __future__ import annotations

import grpc

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1.promotion_pb2_grpc import PromotionServiceStub
from services.kit.grpc_errors import error_from_rpc
from services.kit.wire import moment
from services.room.application.ports import CampaignView

CALLEE = "promotion"


def campaign_of(reply: pb.Campaign) -> CampaignView:
    return CampaignView(
        campaign_id=reply.campaign_id,
        sku_id=reply.sku_id,
        room_id=reply.room_id,
        state=reply.state,
        starts_at=moment(reply.starts_at) if reply.HasField("starts_at") else None,
        ends_at=moment(reply.ends_at) if reply.HasField("ends_at") else None,
    )


class GrpcCampaigns:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float = 5.0) -> None:
        self._stub = PromotionServiceStub(channel)
        self._timeout = timeout_seconds

    async def start(self, merchant_id: str, campaign_id: str, room_id: str) -> CampaignView:
        request = pb.CampaignRequest(
            merchant_id=merchant_id, campaign_id=campaign_id, room_id=room_id
        )
        try:
            return campaign_of(await self._stub.StartCampaign(request, timeout=self._timeout))
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, CALLEE) from error

    async def stop(self, merchant_id: str, campaign_id: str, room_id: str) -> CampaignView:
        request = pb.CampaignRequest(
            merchant_id=merchant_id, campaign_id=campaign_id, room_id=room_id
        )
        try:
            return campaign_of(await self._stub.StopCampaign(request, timeout=self._timeout))
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, CALLEE) from error
