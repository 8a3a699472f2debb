"""Inventory's HTTP API for merchants and operators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request
from pydantic import BaseModel, Field

from services.inventory.adapters.repository import EventSourcedStockRepository
from services.inventory.adapters.stock_levels import StockLevel, StockLevels
from services.inventory.application.handlers import get_stock, receive_stock
from services.inventory.domain.stock import MAX_RECEIPT, MAX_SKU_ID_LENGTH, ReceiveStock, SkuStock
from services.inventory.settings import InventorySettings
from services.kit.db import database
from services.kit.errors import NotFoundError
from services.kit.eventstore import PostgresEventStore
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.identity import Role

SCHEMA_PACKAGES = ["services.inventory"]
STOCK_ROLES = (Role.MERCHANT_ADMIN, Role.OPERATOR)

SkuId = Annotated[str, Path(min_length=1, max_length=MAX_SKU_ID_LENGTH, pattern=r"^[\x21-\x7e]+$")]


class StockReceipt(BaseModel):
    quantity: int = Field(gt=0, le=MAX_RECEIPT, description="Units received")
    note: str = Field(default="", max_length=200)


class Stock(BaseModel):
    sku_id: str
    merchant_id: str
    on_hand: int
    version: int

    @classmethod
    def of(cls, stock: SkuStock | StockLevel) -> Stock:
        return cls(
            sku_id=stock.sku_id,
            merchant_id=stock.merchant_id,
            on_hand=stock.on_hand,
            version=stock.version,
        )


router = APIRouter(prefix="/v1", tags=["stock"])


def _repository(request: Request) -> EventSourcedStockRepository:
    repository: EventSourcedStockRepository = request.app.state.stock
    return repository


@router.post("/skus/{sku_id}/receipts", status_code=201, summary="Receive stock of a SKU")
async def receive(
    sku_id: SkuId, body: StockReceipt, caller: CurrentCaller, request: Request
) -> Stock:
    caller.require_role(Role.MERCHANT_ADMIN, Role.OPERATOR)
    command = ReceiveStock(caller.tenant(), sku_id, body.quantity, body.note)
    return Stock.of(await receive_stock(command, _repository(request)))


@router.get("/skus/{sku_id}", summary="Stock of a SKU, from the event store")
async def read(sku_id: SkuId, caller: CurrentCaller, request: Request) -> Stock:
    caller.require_role(*STOCK_ROLES)
    return Stock.of(await get_stock(caller.tenant(), sku_id, _repository(request)))


@router.get("/stock-levels/{sku_id}", summary="Stock of a SKU, from the projected read model")
async def level(sku_id: SkuId, caller: CurrentCaller, request: Request) -> Stock:
    caller.require_role(*STOCK_ROLES)
    levels: StockLevels = request.app.state.levels
    found = await levels.get(caller.tenant(), sku_id)
    if found is None:
        raise NotFoundError(f"no stock level for SKU {sku_id} yet")
    return Stock.of(found)


@router.get("/stock-levels", summary="Stock levels of the caller's merchant")
async def levels(
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[Stock]:
    caller.require_role(*STOCK_ROLES)
    found = await request.app.state.levels.list(caller.tenant(), limit, offset)
    return [Stock.of(f) for f in found]


def create_http_app(settings: InventorySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database(settings, SCHEMA_PACKAGES) as pool:
            app.state.stock = EventSourcedStockRepository(
                PostgresEventStore(pool, settings.service_name)
            )
            app.state.levels = StockLevels(pool)
            add_readiness_check(app, "postgres", lambda: pool.fetchval("SELECT 1"))
            yield

    return create_app(settings, title="Inventory", routers=[router], lifespan=lifespan)
