"""The inventory service's flash sales over gRPC, as promotion's campaigns use them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from livecommerce.inventory.v1 import inventory_pb2 as pb
from livecommerce.inventory.v1 import inventory_pb2_grpc
from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    KitError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    UnavailableError,
)
from services.kit.wire import timestamp
from services.promotion.domain.campaigns import CampaignScheduled

if TYPE_CHECKING:
    from livecommerce.inventory.v1.inventory_pb2_grpc import InventoryServiceAsyncStub

_ERRORS: dict[grpc.StatusCode, type[KitError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def _translated(error: grpc.aio.AioRpcError) -> KitError:
    """Inventory's refusal in the caller's words (the same status), an outage as
    UnavailableError."""
    kind = _ERRORS.get(error.code(), UnavailableError)
    return kind(f"inventory: {error.details() or error.code().name}")


class GrpcInventorySales:
    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub: InventoryServiceAsyncStub = inventory_pb2_grpc.InventoryServiceStub(channel)
        self._timeout = timeout

    async def schedule_sale(self, merchant_id: str, campaign: CampaignScheduled) -> None:
        request = pb.ScheduleSaleRequest(
            merchant_id=merchant_id,
            sale_id=campaign.campaign_id,
            sku_id=campaign.sku_id,
            quantity=campaign.quantity,
            starts_at=timestamp(campaign.stock_opens_at),
            ends_at=timestamp(campaign.ends_at),
            per_user_limit=campaign.per_user_limit,
            hold_ttl_seconds=campaign.hold_ttl_seconds,
        )
        try:
            await self._stub.ScheduleSale(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _translated(error) from error

    async def end_sale(self, merchant_id: str, sale_id: str) -> None:
        try:
            await self._stub.EndSale(
                pb.GetSaleRequest(merchant_id=merchant_id, sale_id=sale_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _translated(error) from error
