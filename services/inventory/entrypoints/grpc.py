"""Inventory's gRPC API for other services: the reserve path and live sale counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from livecommerce.inventory.v1 import inventory_pb2 as pb
from livecommerce.inventory.v1 import inventory_pb2_grpc
from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.application.flash_sales import FlashSales, SaleStatus
from services.inventory.application.handlers import get_stock
from services.inventory.bootstrap import forget_sold_out_on_restock, inventory
from services.inventory.domain.sale import (
    DEFAULT_HOLD_TTL_SECONDS,
    AllocateToSale,
    ReleaseReason,
    ReserveStock,
)
from services.inventory.settings import InventorySettings
from services.kit.batching import ReplyPacer
from services.kit.errors import InvalidArgumentError
from services.kit.grpc import Context, current_caller, start_grpc_server
from services.kit.identity import Role, TokenVerifier
from services.kit.metrics import serve_metrics
from services.kit.wire import moment, timestamp

HOLD_ROLES = (Role.SERVICE, Role.OPS)
READ_ROLES = (Role.SERVICE, Role.OPS, Role.MERCHANT_ADMIN, Role.OPERATOR, Role.HOST)
SALE_ROLES = (Role.SERVICE, Role.OPS, Role.MERCHANT_ADMIN)
"""Who may schedule and end sales: services (promotion's campaigns) and ops for the merchant
they name, a merchant's admin for their own merchant."""


def sale_status(status: SaleStatus) -> pb.SaleStatus:
    return pb.SaleStatus(
        sale_id=status.sale.sale_id,
        sku_id=status.sale.sku_id,
        state=status.state,
        allocated=status.allocated,
        available=status.available,
        held=status.held,
        sold=status.sold,
        returned=status.returned,
        starts_at=timestamp(status.sale.starts_at),
        ends_at=timestamp(status.sale.ends_at),
        per_user_limit=status.sale.per_user_limit,
    )


def _moment(request: pb.ScheduleSaleRequest, field: Literal["starts_at", "ends_at"]) -> datetime:
    if not request.HasField(field):
        raise InvalidArgumentError(f"{field} is required")
    try:
        return moment(getattr(request, field))
    except (ValueError, OverflowError) as error:
        raise InvalidArgumentError(f"{field} is not a valid time") from error


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(
        self,
        stock: EventSourcedStockRepository,
        flash_sales: FlashSales,
        stream_interval: float = 0.5,
        sold_out_pacer: ReplyPacer | None = None,
    ) -> None:
        """``sold_out_pacer``: sold-out answers leave through it (none: each at once)."""
        self._stock = stock
        self._flash_sales = flash_sales
        self._stream_interval = stream_interval
        self._sold_out_pacer = sold_out_pacer or ReplyPacer(0)

    async def Reserve(self, request: pb.ReserveRequest, context: Context) -> pb.ReserveReply:
        caller = current_caller()
        caller.require_role(*HOLD_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"sale {request.sale_id}")
        reservation = await self._flash_sales.reserve(
            ReserveStock(
                merchant_id=merchant_id,
                sale_id=request.sale_id,
                user_id=request.user_id,
                quantity=request.quantity,
                hold_id=request.hold_id,
            ),
            retry=request.retry,
        )
        reply = pb.ReserveReply(
            outcome=pb.ReserveReply.RESERVED if reservation.reserved else pb.ReserveReply.SOLD_OUT,
            hold_id=reservation.hold_id,
            remaining=reservation.remaining,
        )
        if reservation.expires_at is not None:
            reply.expires_at.CopyFrom(timestamp(reservation.expires_at))
        if not reservation.reserved:
            # Most of a spike's answers: they go out together rather than one by one (held
            # ones already do, with their group commit).
            await self._sold_out_pacer.turn()
        return reply

    async def Confirm(self, request: pb.HoldRequest, context: Context) -> pb.HoldReply:
        caller = current_caller()
        caller.require_role(*HOLD_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"hold {request.hold_id}")
        state = await self._flash_sales.confirm(merchant_id, request.hold_id)
        return pb.HoldReply(hold_id=request.hold_id, state=state.value)

    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.HoldReply:
        caller = current_caller()
        caller.require_role(*HOLD_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"hold {request.hold_id}")
        try:
            reason = ReleaseReason(request.reason or ReleaseReason.CANCELLED.value)
        except ValueError as error:
            raise InvalidArgumentError("reason must be cancelled, expired or refunded") from error
        if reason is ReleaseReason.UNACKNOWLEDGED:
            raise InvalidArgumentError("reason must be cancelled, expired or refunded")
        state = await self._flash_sales.release(merchant_id, request.hold_id, reason)
        return pb.HoldReply(hold_id=request.hold_id, state=state.value)

    async def GetStock(self, request: pb.GetStockRequest, context: Context) -> pb.StockLevel:
        caller = current_caller()
        caller.require_role(*READ_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"SKU {request.sku_id}")
        stock = await get_stock(merchant_id, request.sku_id, self._stock)
        return pb.StockLevel(
            sku_id=stock.sku_id,
            merchant_id=stock.merchant_id,
            on_hand=stock.on_hand,
            version=stock.version,
        )

    async def GetSale(self, request: pb.GetSaleRequest, context: Context) -> pb.SaleStatus:
        caller = current_caller()
        caller.require_role(*READ_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"sale {request.sale_id}")
        return sale_status(await self._flash_sales.status(merchant_id, request.sale_id))

    async def ScheduleSale(
        self, request: pb.ScheduleSaleRequest, context: Context
    ) -> pb.SaleStatus:
        caller = current_caller()
        caller.require_role(*SALE_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"sale {request.sale_id}")
        await self._flash_sales.schedule(
            AllocateToSale(
                merchant_id=merchant_id,
                sale_id=request.sale_id,
                sku_id=request.sku_id,
                quantity=request.quantity,
                starts_at=_moment(request, "starts_at"),
                ends_at=_moment(request, "ends_at"),
                per_user_limit=request.per_user_limit,
                hold_ttl_seconds=request.hold_ttl_seconds or DEFAULT_HOLD_TTL_SECONDS,
                buckets=request.buckets or 1,
            )
        )
        return sale_status(await self._flash_sales.status(merchant_id, request.sale_id))

    async def EndSale(self, request: pb.GetSaleRequest, context: Context) -> pb.SaleStatus:
        caller = current_caller()
        caller.require_role(*SALE_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"sale {request.sale_id}")
        return sale_status(await self._flash_sales.end(merchant_id, request.sale_id))

    async def StreamStock(
        self, request: pb.GetSaleRequest, context: Context
    ) -> AsyncIterator[pb.SaleStatus]:
        caller = current_caller()
        caller.require_role(*READ_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"sale {request.sale_id}")
        last: pb.SaleStatus | None = None
        while True:
            status = await self._flash_sales.status(merchant_id, request.sale_id)
            message = sale_status(status)
            if message != last:
                yield message
                last = message
            if status.state == "ended" and status.held == 0:
                return
            await asyncio.sleep(self._stream_interval)


async def serve_grpc(settings: InventorySettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    async with inventory(settings) as parts:
        servicer = InventoryServicer(
            parts.stock,
            parts.flash_sales,
            settings.stream_stock_interval_seconds,
            ReplyPacer(settings.sold_out_reply_interval_ms / 1000),
        )
        server, _ = await start_grpc_server(
            service=settings.service_name,
            address=f"{settings.grpc_host}:{settings.grpc_port}",
            verifier=TokenVerifier(settings),
            register=lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
                servicer, s
            ),
            service_names=[pb.DESCRIPTOR.services_by_name["InventoryService"].full_name],
            max_message_bytes=settings.grpc_max_message_bytes,
        )
        restocks = asyncio.create_task(
            forget_sold_out_on_restock(parts.redis, parts.flash_sales.sold_out, stop)
        )
        await stop.wait()
        await server.stop(grace=5)
        await restocks
