"""The promotion client over real gRPC: StartCampaign/StopCampaign carry the merchant and
campaign with a service identity, the reply becomes a CampaignView, and promotion's refusals
keep their meaning (NOT_FOUND stays a 404)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1 import promotion_pb2_grpc
from services.kit.errors import NotFoundError, UnavailableError
from services.kit.grpc import Context, authenticated_channel, current_caller, start_grpc_server
from services.kit.identity import Role, ServiceIdentity, TokenVerifier
from services.kit.settings import ServiceSettings
from services.kit.wire import timestamp
from services.room.adapters.promotion_client import GrpcCampaigns

ENDS_AT = datetime(2030, 1, 1, 20, 0, tzinfo=UTC)


class FakePromotion(promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, str]] = []

    async def _answer(self, request: pb.CampaignRequest, state: str) -> pb.Campaign:
        caller = current_caller()
        assert Role.SERVICE in caller.roles
        self.calls.append(
            (caller.subject, state, request.merchant_id, request.campaign_id, request.room_id)
        )
        if request.campaign_id == "missing":
            raise NotFoundError("campaign missing not found")
        return pb.Campaign(
            campaign_id=request.campaign_id,
            sku_id="SKU-9",
            room_id="room-1",
            state=state,
            starts_at=timestamp(ENDS_AT - timedelta(minutes=10)),
            ends_at=timestamp(ENDS_AT),
        )

    async def StartCampaign(self, request: pb.CampaignRequest, context: Context) -> pb.Campaign:
        return await self._answer(request, "live")

    async def StopCampaign(self, request: pb.CampaignRequest, context: Context) -> pb.Campaign:
        return await self._answer(request, "ended")


@pytest_asyncio.fixture
async def promotion() -> AsyncIterator[tuple[FakePromotion, GrpcCampaigns]]:
    settings = ServiceSettings(service_name="room")
    # Only the campaign calls are served; the others answer UNIMPLEMENTED (the base's).
    fake = FakePromotion()  # type: ignore[abstract]
    server, port = await start_grpc_server(
        service="promotion",
        address="127.0.0.1:0",
        verifier=TokenVerifier(settings),
        register=lambda s: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(fake, s),
        service_names=["livecommerce.promotion.v1.PromotionService"],
    )
    channel = authenticated_channel(f"127.0.0.1:{port}", ServiceIdentity(settings).token)
    try:
        yield fake, GrpcCampaigns(channel, timeout_seconds=5)
    finally:
        await channel.close()
        await server.stop(None)


async def test_starts_and_stops_a_campaign_as_the_room_service(
    promotion: tuple[FakePromotion, GrpcCampaigns],
) -> None:
    fake, campaigns = promotion
    started = await campaigns.start("m1", "flash-1", "room-1")
    stopped = await campaigns.stop("m1", "flash-1", "room-1")
    assert (started.state, stopped.state) == ("live", "ended")
    assert (started.room_id, started.sku_id, started.ends_at) == ("room-1", "SKU-9", ENDS_AT)
    assert fake.calls == [
        ("service:room", "live", "m1", "flash-1", "room-1"),
        ("service:room", "ended", "m1", "flash-1", "room-1"),
    ]


async def test_promotions_refusal_keeps_its_meaning(
    promotion: tuple[FakePromotion, GrpcCampaigns],
) -> None:
    _, campaigns = promotion
    with pytest.raises(NotFoundError, match="missing"):
        await campaigns.start("m1", "missing", "room-1")


async def test_an_unreachable_promotion_is_unavailable() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        with pytest.raises(UnavailableError):
            await GrpcCampaigns(channel, timeout_seconds=1).start("m1", "flash-1", "room-1")
    finally:
        await channel.close()
