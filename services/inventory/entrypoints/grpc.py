"""Inventory's gRPC API for other services."""

from __future__ import annotations

import asyncio

from livecommerce.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.application.handlers import get_stock
from services.inventory.entrypoints.http import SCHEMA_PACKAGES
from services.inventory.settings import InventorySettings
from services.kit.db import database
from services.kit.eventstore import PostgresEventStore
from services.kit.grpc import Context, current_caller, start_grpc_server
from services.kit.identity import Role, TokenVerifier
from services.kit.metrics import serve_metrics


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, stock: EventSourcedStockRepository) -> None:
        self._stock = stock

    async def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        caller = current_caller()
        caller.require_role(Role.SERVICE, Role.OPS, Role.MERCHANT_ADMIN, Role.OPERATOR)
        merchant_id = request.merchant_id or caller.tenant()
        caller.ensure_can_see(merchant_id, f"SKU {request.sku_id}")
        stock = await get_stock(merchant_id, request.sku_id, self._stock)
        return inventory_pb2.StockLevel(
            sku_id=stock.sku_id,
            merchant_id=stock.merchant_id,
            on_hand=stock.on_hand,
            version=stock.version,
        )


async def serve_grpc(settings: InventorySettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    async with database(settings, SCHEMA_PACKAGES) as pool:
        servicer = InventoryServicer(
            EventSourcedStockRepository(PostgresEventStore(pool, settings.service_name))
        )
        server, _ = await start_grpc_server(
            service=settings.service_name,
            address=f"{settings.grpc_host}:{settings.grpc_port}",
            verifier=TokenVerifier(settings),
            register=lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
                servicer, s
            ),
            service_names=[inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name],
        )
        await stop.wait()
        await server.stop(grace=5)
