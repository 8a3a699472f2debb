"""The inventory service's holds, over gRPC (inventory.v1.InventoryService)."""

from __future__ import annotations

import grpc
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from livecommerce.inventory.v1 import inventory_pb2 as pb
from livecommerce.inventory.v1.inventory_pb2_grpc import InventoryServiceStub
from services.kit.errors import PreconditionFailedError, UnavailableError
from services.kit.grpc_errors import error_from_rpc
from services.kit.wire import moment
from services.order.application.ports import Reservation

CALLEE = "inventory"


class GrpcStock:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float = 5.0) -> None:
        self._stub = InventoryServiceStub(channel)
        self._timeout = timeout_seconds

    async def reserve(
        self,
        merchant_id: str,
        sale_id: str,
        buyer_id: str,
        quantity: int,
        hold_id: str,
        *,
        again: bool = False,
    ) -> Reservation:
        """A lost answer (timeout, UNAVAILABLE) is asked again with ``retry`` set, so the
        hold it may have granted is found instead of a second one being refused."""
        request = pb.ReserveRequest(
            merchant_id=merchant_id,
            sale_id=sale_id,
            user_id=buyer_id,
            quantity=quantity,
            hold_id=hold_id,
        )
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_random(0.05, 0.2),
            retry=retry_if_exception_type(UnavailableError),
            reraise=True,
        ):
            with attempt:
                request.retry = again or attempt.retry_state.attempt_number > 1
                try:
                    reply = await self._stub.Reserve(request, timeout=self._timeout)
                except grpc.aio.AioRpcError as error:
                    raise error_from_rpc(error, CALLEE) from error
        if reply.outcome != pb.ReserveReply.Outcome.RESERVED:
            return Reservation(reserved=False, expires_at=None)
        expires = moment(reply.expires_at) if reply.HasField("expires_at") else None
        return Reservation(reserved=True, expires_at=expires)

    async def confirm(self, merchant_id: str, hold_id: str) -> bool:
        try:
            reply = await self._stub.Confirm(
                pb.HoldRequest(merchant_id=merchant_id, hold_id=hold_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            mapped = error_from_rpc(error, CALLEE)
            if isinstance(mapped, PreconditionFailedError):
                return False
            raise mapped from error
        return reply.state != "released"

    async def release(self, merchant_id: str, hold_id: str, reason: str) -> None:
        try:
            await self._stub.Release(
                pb.ReleaseRequest(merchant_id=merchant_id, hold_id=hold_id, reason=reason),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, CALLEE) from error
