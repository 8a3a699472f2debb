"""Inventory's HTTP API for merchants and operators: stock, flash sales, reconciliation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from services.inventory.adapters.stock_levels import StockLevel, StockLevels
from services.inventory.application.flash_sales import Drift, FlashSales, SaleStatus
from services.inventory.application.handlers import get_stock, receive_stock
from services.inventory.bootstrap import Inventory, inventory
from services.inventory.domain.sale import (
    DEFAULT_HOLD_TTL_SECONDS,
    MAX_BUCKETS,
    MAX_HOLD_TTL_SECONDS,
    MAX_PER_USER_LIMIT,
    MIN_HOLD_TTL_SECONDS,
    AllocateToSale,
)
from services.inventory.domain.stock import MAX_RECEIPT, ReceiveStock, SkuStock
from services.inventory.settings import InventorySettings
from services.kit.errors import NotFoundError
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.identity import Role
from services.kit.tenancy import MAX_ID_LENGTH

STOCK_ROLES = (Role.MERCHANT_ADMIN, Role.OPERATOR)
ID_PATTERN = r"^[\x21-\x7e]+$"

Id = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
SkuId = Id


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


class NewSale(BaseModel):
    sale_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    sku_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    quantity: int = Field(gt=0, le=MAX_RECEIPT, description="Units set aside for the sale")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    per_user_limit: int = Field(ge=1, le=MAX_PER_USER_LIMIT)
    hold_ttl_seconds: int = Field(
        default=DEFAULT_HOLD_TTL_SECONDS, ge=MIN_HOLD_TTL_SECONDS, le=MAX_HOLD_TTL_SECONDS
    )
    buckets: int = Field(default=1, ge=1, le=MAX_BUCKETS, description="Stock buckets (hot SKUs)")


class Sale(BaseModel):
    sale_id: str
    sku_id: str
    state: str
    allocated: int
    available: int
    held: int
    sold: int
    returned: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    buckets: int

    @classmethod
    def of(cls, status: SaleStatus) -> Sale:
        return cls(
            sale_id=status.sale.sale_id,
            sku_id=status.sale.sku_id,
            state=status.state,
            allocated=status.allocated,
            available=status.available,
            held=status.held,
            sold=status.sold,
            returned=status.returned,
            starts_at=status.sale.starts_at,
            ends_at=status.sale.ends_at,
            per_user_limit=status.sale.per_user_limit,
            buckets=status.sale.buckets,
        )


class Reconciliation(BaseModel):
    sale_id: str
    in_agreement: bool
    drifts: list[dict[str, str | int]]


router = APIRouter(prefix="/v1")


def _parts(request: Request) -> Inventory:
    parts: Inventory = request.app.state.inventory
    return parts


def _sales(request: Request) -> FlashSales:
    return _parts(request).flash_sales


@router.post("/skus/{sku_id}/receipts", status_code=201, tags=["stock"], summary="Receive stock")
async def receive(
    sku_id: SkuId, body: StockReceipt, caller: CurrentCaller, request: Request
) -> Stock:
    caller.require_role(*STOCK_ROLES)
    command = ReceiveStock(caller.tenant(), sku_id, body.quantity, body.note)
    return Stock.of(await receive_stock(command, _parts(request).stock))


@router.get("/skus/{sku_id}", tags=["stock"], summary="Stock of a SKU, from the event store")
async def read(sku_id: SkuId, caller: CurrentCaller, request: Request) -> Stock:
    caller.require_role(*STOCK_ROLES)
    return Stock.of(await get_stock(caller.tenant(), sku_id, _parts(request).stock))


@router.get(
    "/stock-levels/{sku_id}",
    tags=["stock"],
    summary="Stock of a SKU, from the projected read model",
)
async def level(sku_id: SkuId, caller: CurrentCaller, request: Request) -> Stock:
    caller.require_role(*STOCK_ROLES)
    found = await StockLevels(_parts(request).pool).get(caller.tenant(), sku_id)
    if found is None:
        raise NotFoundError(f"no stock level for SKU {sku_id} yet")
    return Stock.of(found)


@router.get("/stock-levels", tags=["stock"], summary="Stock levels of the caller's merchant")
async def levels(
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[Stock]:
    caller.require_role(*STOCK_ROLES)
    found = await StockLevels(_parts(request).pool).list(caller.tenant(), limit, offset)
    return [Stock.of(f) for f in found]


@router.post(
    "/sales", status_code=201, tags=["flash sales"], summary="Allocate stock to a flash sale"
)
async def schedule(body: NewSale, caller: CurrentCaller, request: Request) -> Sale:
    caller.require_role(*STOCK_ROLES)
    merchant_id = caller.tenant()
    await _sales(request).schedule(
        AllocateToSale(
            merchant_id=merchant_id,
            sale_id=body.sale_id,
            sku_id=body.sku_id,
            quantity=body.quantity,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            per_user_limit=body.per_user_limit,
            hold_ttl_seconds=body.hold_ttl_seconds,
            buckets=body.buckets,
        )
    )
    return Sale.of(await _sales(request).status(merchant_id, body.sale_id))


@router.get("/sales/{sale_id}", tags=["flash sales"], summary="A sale's durable counts")
async def sale(sale_id: Id, caller: CurrentCaller, request: Request) -> Sale:
    caller.require_role(*STOCK_ROLES, Role.HOST)
    return Sale.of(await _sales(request).status(caller.tenant(), sale_id))


@router.post(
    "/sales/{sale_id}/end", tags=["flash sales"], summary="End a sale and return unsold units"
)
async def end(sale_id: Id, caller: CurrentCaller, request: Request) -> Sale:
    caller.require_role(*STOCK_ROLES)
    return Sale.of(await _sales(request).end(caller.tenant(), sale_id))


@router.post(
    "/sales/{sale_id}/rebuild",
    tags=["flash sales"],
    summary="Rebuild the sale in Redis from events",
)
async def rebuild(sale_id: Id, caller: CurrentCaller, request: Request) -> Reconciliation:
    caller.require_role(Role.MERCHANT_ADMIN)
    flash_sales = _sales(request)
    found, _ = await _parts(request).ledger.sale(caller.tenant(), sale_id)
    await flash_sales.rebuild(found, force=True)
    return _reconciliation(sale_id, await flash_sales.reconcile([found]))


@router.get(
    "/sales/{sale_id}/reconciliation",
    tags=["flash sales"],
    summary="Compare the sale in Redis with the event store",
)
async def reconcile(sale_id: Id, caller: CurrentCaller, request: Request) -> Reconciliation:
    caller.require_role(*STOCK_ROLES)
    found, _ = await _parts(request).ledger.sale(caller.tenant(), sale_id)
    return _reconciliation(sale_id, await _sales(request).reconcile([found]))


def _reconciliation(sale_id: str, drifts: list[Drift]) -> Reconciliation:
    return Reconciliation(
        sale_id=sale_id,
        in_agreement=not drifts,
        drifts=[{"figure": d.figure, "redis": d.redis, "store": d.store} for d in drifts],
    )


def create_http_app(settings: InventorySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inventory(settings) as parts:
            app.state.inventory = parts
            add_readiness_check(app, "postgres", lambda: parts.pool.fetchval("SELECT 1"))
            add_readiness_check(app, "redis", parts.redis.ping)
            yield

    return create_app(settings, title="Inventory", routers=[router], lifespan=lifespan)
