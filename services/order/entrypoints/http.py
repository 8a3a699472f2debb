"""Order's HTTP API: buyers place, pay, cancel, refund and return; merchants ship, deliver
and decide returns; payment providers post their signed notifications."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field

from livecommerce.order.v1 import events_pb2
from services.kit import metrics
from services.kit.context import bind_actor
from services.kit.errors import NotFoundError
from services.kit.eventstore import utcnow
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.identity import Caller, Role
from services.kit.nonces import NonceStore
from services.kit.ratelimit import install_rate_limiter, limit_rate
from services.kit.redis import create_redis
from services.order.application.orders import Orders, Payable
from services.order.application.ports import SoldOutError
from services.order.bootstrap import OrderService, order_service
from services.order.domain.checkout import PlaceOrder, validate_idempotency_key
from services.order.domain.order import Channel, Order, OrderStatus, ReturnKind
from services.order.settings import OrderSettings

STAFF_ROLES = (Role.MERCHANT_ADMIN, Role.OPERATOR, Role.OPS)
Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
IdField = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
OptionalIdField = Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9._:-]*$")]


class LineIn(BaseModel):
    sku_id: IdField
    quantity: int = Field(ge=1, le=10_000)


class NewOrder(BaseModel):
    merchant_id: IdField
    room_id: IdField
    channel: Channel
    lines: list[LineIn] = Field(min_length=1, max_length=50)
    coupon_ids: list[IdField] = Field(default_factory=list, max_length=5)
    group_id: OptionalIdField = ""
    share_code: OptionalIdField = ""


class LineOut(BaseModel):
    sku_id: str
    quantity: int
    sale_id: str
    hold_id: str
    list_unit_price_minor: int
    unit_price_minor: int
    promotion_discount_minor: int
    coupon_share_minor: int
    total_minor: int
    promotion_kind: str
    promotion_id: str


class RefundOut(BaseModel):
    refund_id: str
    amount_minor: int
    refunded: bool
    lines: list[dict[str, Any]]


class ReturnOut(BaseModel):
    return_id: str
    kind: str
    state: str
    lines: list[dict[str, Any]]


class OrderOut(BaseModel):
    order_id: str
    merchant_id: str
    buyer_id: str
    room_id: str
    channel: str
    status: OrderStatus
    currency: str
    lines: list[LineOut]
    coupon_ids: list[str]
    group_id: str
    share_code: str
    subtotal_minor: int
    promotion_discount_minor: int
    coupon_discount_minor: int
    shipping_fee_minor: int
    shipping_discount_minor: int
    total_minor: int
    refunded_minor: int
    payment_deadline: datetime
    cancel_reason: str | None
    payment_id: str | None
    paid_at: datetime | None
    carrier: str
    tracking_number: str
    delivered_at: datetime | None
    auto_complete_at: datetime | None
    refunds: list[RefundOut]
    returns: list[ReturnOut]
    price_explanation: list[str]
    version: int

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        d = order.details
        t = d.totals
        return cls(
            order_id=order.order_id,
            merchant_id=order.merchant_id,
            buyer_id=d.buyer_id,
            room_id=d.room_id,
            channel=d.channel,
            status=order.status,
            currency=d.currency,
            lines=[
                LineOut(
                    sku_id=x.sku_id,
                    quantity=x.quantity,
                    sale_id=x.sale_id,
                    hold_id=x.hold_id,
                    list_unit_price_minor=x.list_unit_price,
                    unit_price_minor=x.unit_price,
                    promotion_discount_minor=x.promotion_discount,
                    coupon_share_minor=x.coupon_share,
                    total_minor=x.total,
                    promotion_kind=x.promotion_kind,
                    promotion_id=x.promotion_id,
                )
                for x in d.lines
            ],
            coupon_ids=list(d.coupon_ids),
            group_id=d.group_id,
            share_code=d.share_code,
            subtotal_minor=t.subtotal,
            promotion_discount_minor=t.promotion_discount,
            coupon_discount_minor=t.coupon_discount,
            shipping_fee_minor=t.shipping_fee,
            shipping_discount_minor=t.shipping_discount,
            total_minor=t.total,
            refunded_minor=order.refunded_amount,
            payment_deadline=d.payment_deadline,
            cancel_reason=order.cancel_reason.value if order.cancel_reason else None,
            payment_id=order.payment.payment_id if order.payment else None,
            paid_at=order.payment.paid_at if order.payment else None,
            carrier=order.carrier,
            tracking_number=order.tracking_number,
            delivered_at=order.delivered_at,
            auto_complete_at=order.auto_complete_at,
            refunds=[
                RefundOut(
                    refund_id=r.refund_id,
                    amount_minor=r.amount,
                    refunded=r.refunded,
                    lines=[
                        {"sku_id": x.sku_id, "quantity": x.quantity, "amount_minor": x.amount}
                        for x in r.lines
                    ],
                )
                for r in order.refunds.values()
            ],
            returns=[
                ReturnOut(
                    return_id=r.return_id,
                    kind=r.kind.value,
                    state=r.state.value,
                    lines=[{"sku_id": x.sku_id, "quantity": x.quantity} for x in r.lines],
                )
                for r in order.returns.values()
            ],
            price_explanation=list(d.price_explanation),
            version=order.version,
        )


class OrderSummary(BaseModel):
    order_id: str
    merchant_id: str
    buyer_id: str
    room_id: str
    status: str
    currency: str
    total_minor: int
    refunded_minor: int
    placed_at: datetime
    updated_at: datetime


class PayableOut(BaseModel):
    order_id: str
    payment_id: str
    pay_url: str
    amount_minor: int
    currency: str

    @classmethod
    def of(cls, payable: Payable) -> PayableOut:
        return cls(
            order_id=payable.order_id,
            payment_id=payable.payment_id,
            pay_url=payable.pay_url,
            amount_minor=payable.amount,
            currency=payable.currency,
        )


class Shipment(BaseModel):
    carrier: str = Field(min_length=1, max_length=64)
    tracking_number: str = Field(min_length=1, max_length=64)


class RefundIn(BaseModel):
    refund_id: OptionalIdField = ""
    lines: list[LineIn] = Field(default_factory=list, max_length=50)
    """Empty: everything not refunded yet."""
    reason: str = Field(default="", max_length=500)


class ReturnIn(BaseModel):
    return_id: OptionalIdField = ""
    kind: ReturnKind = ReturnKind.RETURN
    lines: list[LineIn] = Field(min_length=1, max_length=50)
    reason: str = Field(default="", max_length=500)


class ReturnDecision(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=500)


class HistoryEntry(BaseModel):
    version: int
    type: str
    occurred_at: datetime
    event_id: str
    correlation_id: str
    actor: str = Field(description="Who asked for it: a user, staff or a service; empty for timers")
    data: dict[str, Any]


router = APIRouter(prefix="/v1")


def _service(request: Request) -> OrderService:
    found: OrderService = request.app.state.order
    return found


def _orders(request: Request) -> Orders:
    return _service(request).orders


async def _merchant_of(request: Request, order_id: str, caller: Caller) -> str:
    merchant_id = await _service(request).store.merchant_of(order_id)
    if merchant_id is None:
        raise NotFoundError(f"order {order_id} not found")
    if not caller.roles & {Role.VIEWER}:
        caller.ensure_can_see(merchant_id, f"order {order_id}")
    return merchant_id


def _is_staff(caller: Caller) -> bool:
    return bool(caller.roles.intersection(STAFF_ROLES))


async def _visible(request: Request, order_id: str, caller: Caller) -> Order:
    """Buyers see their own orders; a merchant's staff see the merchant's."""
    merchant_id = await _merchant_of(request, order_id, caller)
    if _is_staff(caller):
        caller.ensure_can_see(merchant_id, f"order {order_id}")
        return await _orders(request).get(merchant_id, order_id)
    caller.require_role(Role.VIEWER)
    return await _orders(request).get_for_buyer(merchant_id, order_id, caller.subject)


async def _staff_order(request: Request, order_id: str, caller: Caller) -> str:
    caller.require_role(*STAFF_ROLES)
    merchant_id = await _merchant_of(request, order_id, caller)
    caller.ensure_can_see(merchant_id, f"order {order_id}")
    return merchant_id


@router.post(
    "/orders",
    status_code=201,
    tags=["checkout"],
    summary="Place an order",
    dependencies=[Depends(limit_rate("buy"))],
    responses={429: {"description": "Too many orders from this buyer or address"}},
)
async def place(
    body: NewOrder,
    caller: CurrentCaller,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OrderOut:
    caller.require_role(Role.VIEWER)
    key = validate_idempotency_key(idempotency_key)
    command = PlaceOrder(
        merchant_id=body.merchant_id,
        buyer_id=caller.subject,
        room_id=body.room_id,
        channel=body.channel,
        lines=tuple((x.sku_id, x.quantity) for x in body.lines),
        coupon_ids=tuple(body.coupon_ids),
        group_id=body.group_id,
        share_code=body.share_code,
    )
    try:
        placed = await _orders(request).place(command, key)
    except SoldOutError:
        # Most of a spike's answers: refused together rather than one by one.
        await _service(request).sold_out_pacer.turn()
        raise
    return OrderOut.of(placed)


@router.get("/orders/{order_id}", tags=["orders"], summary="One order")
async def read(order_id: Id, caller: CurrentCaller, request: Request) -> OrderOut:
    return OrderOut.of(await _visible(request, order_id, caller))


@router.get("/orders", tags=["orders"], summary="Orders: a buyer's own, or a merchant's")
async def listing(
    caller: CurrentCaller,
    request: Request,
    room_id: Annotated[str | None, Query(max_length=64)] = None,
    status: OrderStatus | None = None,
    placed_from: datetime | None = None,
    placed_until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> list[OrderSummary]:
    views = _service(request).views
    if _is_staff(caller):
        rows = await views.for_merchant(
            caller.tenant(), room_id, status, placed_from, placed_until, limit, offset
        )
    else:
        caller.require_role(Role.VIEWER)
        rows = await views.for_buyer(caller.subject, status, limit, offset)
    return [OrderSummary(**row) for row in rows]


@router.get("/orders/{order_id}/events", tags=["orders"], summary="The order's full history")
async def history(order_id: Id, caller: CurrentCaller, request: Request) -> list[HistoryEntry]:
    order = await _visible(request, order_id, caller)
    stored = await _service(request).store.history(order.merchant_id, order_id)
    entries = []
    for event in stored:
        message_type = getattr(events_pb2, event.event_type.rsplit(".", 1)[-1])
        message = message_type()
        message.ParseFromString(event.payload)
        entries.append(
            HistoryEntry(
                version=event.version,
                type=event.event_type.rsplit(".", 1)[-1],
                occurred_at=event.occurred_at,
                event_id=str(event.event_id),
                correlation_id=event.correlation_id,
                actor=event.actor,
                data=MessageToDict(message, preserving_proto_field_name=True),
            )
        )
    return entries


@router.post("/orders/{order_id}/cancel", tags=["checkout"], summary="Cancel an unpaid order")
async def cancel(order_id: Id, caller: CurrentCaller, request: Request) -> OrderOut:
    caller.require_role(Role.VIEWER)
    merchant_id = await _merchant_of(request, order_id, caller)
    return OrderOut.of(
        await _orders(request).cancel_by_buyer(merchant_id, order_id, caller.subject)
    )


@router.post("/orders/{order_id}/payments", tags=["payments"], summary="Start paying")
async def pay(order_id: Id, caller: CurrentCaller, request: Request) -> PayableOut:
    caller.require_role(Role.VIEWER)
    merchant_id = await _merchant_of(request, order_id, caller)
    return PayableOut.of(
        await _orders(request).start_payment(merchant_id, order_id, caller.subject)
    )


@router.post(
    "/payments/{provider}/notifications",
    tags=["payments"],
    summary="A payment provider's signed notification (webhook)",
)
async def notification(provider: Id, request: Request) -> dict[str, str]:
    """Verified (signature, then the signed timestamp's window) before anything else, then
    recorded as the provider's doing (the actor of the events it causes); a notification id
    already applied, or being applied, is a no-op (``replayed``): a replay inside the window
    changes nothing, and a failed attempt gives its id back so that the provider's retry is
    applied."""
    service = _service(request)
    if provider != service.provider_name:
        raise NotFoundError(f"no payment provider {provider}")
    headers, body = dict(request.headers), await request.body()
    note = service.payments.verify_notification(headers, body, utcnow())
    bind_actor(f"provider:{provider}")  # verified: the provider is who asks
    nonces: NonceStore = request.app.state.notification_nonces
    window = timedelta(seconds=service.settings.notification_replay_seconds)
    async with nonces.first_time(f"{provider}:{note.notification_id}", window) as first:
        if not first:
            metrics.WEBHOOK_REPLAYS.labels(service.settings.service_name, provider).inc()
            return {"outcome": "replayed"}
        outcome = await service.orders.on_notification(headers, body)
    return {"outcome": outcome}


@router.post("/orders/{order_id}/shipment", tags=["fulfilment"], summary="Mark shipped")
async def ship(order_id: Id, body: Shipment, caller: CurrentCaller, request: Request) -> OrderOut:
    merchant_id = await _staff_order(request, order_id, caller)
    order = await _orders(request).ship(merchant_id, order_id, body.carrier, body.tracking_number)
    return OrderOut.of(order)


@router.post("/orders/{order_id}/delivery", tags=["fulfilment"], summary="Mark delivered")
async def deliver(order_id: Id, caller: CurrentCaller, request: Request) -> OrderOut:
    merchant_id = await _staff_order(request, order_id, caller)
    return OrderOut.of(await _orders(request).deliver(merchant_id, order_id))


@router.post(
    "/orders/{order_id}/completion",
    tags=["fulfilment"],
    summary="Confirm receipt (buyer) or complete (staff)",
)
async def complete(order_id: Id, caller: CurrentCaller, request: Request) -> OrderOut:
    order = await _visible(request, order_id, caller)
    return OrderOut.of(await _orders(request).complete(order.merchant_id, order_id))


@router.post("/orders/{order_id}/refunds", tags=["after-sales"], summary="Refund before shipping")
async def refund(order_id: Id, body: RefundIn, caller: CurrentCaller, request: Request) -> OrderOut:
    order = await _visible(request, order_id, caller)
    buyer = None if _is_staff(caller) else caller.subject
    result = await _orders(request).request_refund(
        order.merchant_id,
        order_id,
        buyer,
        body.refund_id or f"rf{uuid4().hex[:16]}",
        [(x.sku_id, x.quantity) for x in body.lines],
        body.reason,
    )
    return OrderOut.of(result)


@router.post("/orders/{order_id}/returns", tags=["after-sales"], summary="Ask to return goods")
async def request_return(
    order_id: Id, body: ReturnIn, caller: CurrentCaller, request: Request
) -> OrderOut:
    caller.require_role(Role.VIEWER)
    merchant_id = await _merchant_of(request, order_id, caller)
    result = await _orders(request).request_return(
        merchant_id,
        order_id,
        caller.subject,
        body.return_id or f"rt{uuid4().hex[:16]}",
        body.kind,
        [(x.sku_id, x.quantity) for x in body.lines],
        body.reason,
    )
    return OrderOut.of(result)


@router.post(
    "/orders/{order_id}/returns/{return_id}/decision",
    tags=["after-sales"],
    summary="Approve or reject a return",
)
async def decide_return(
    order_id: Id, return_id: Id, body: ReturnDecision, caller: CurrentCaller, request: Request
) -> OrderOut:
    merchant_id = await _staff_order(request, order_id, caller)
    result = await _orders(request).decide_return(
        merchant_id, order_id, return_id, body.decision == "approve", body.reason
    )
    return OrderOut.of(result)


@router.post(
    "/orders/{order_id}/returns/{return_id}/receipt",
    tags=["after-sales"],
    summary="The returned goods arrived (a return is refunded)",
)
async def receive_return(
    order_id: Id, return_id: Id, caller: CurrentCaller, request: Request
) -> OrderOut:
    merchant_id = await _staff_order(request, order_id, caller)
    return OrderOut.of(await _orders(request).receive_return(merchant_id, order_id, return_id))


def create_http_app(settings: OrderSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings.redis_url)
        try:
            async with order_service(settings) as service:
                app.state.order = service
                install_rate_limiter(app, redis, settings, settings.rate_limits())
                app.state.notification_nonces = NonceStore(redis, settings.service_name)
                add_readiness_check(app, "postgres", lambda: service.pool.fetchval("SELECT 1"))
                add_readiness_check(app, "redis", redis.ping)
                yield
        finally:
            await redis.aclose()

    return create_app(settings, title="Order", routers=[router], lifespan=lifespan)
