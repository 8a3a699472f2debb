"""Who may call what: every HTTP route of order, promotion, inventory and referral and every
gRPC method of inventory and promotion, called by every role, with no token, and by the
same roles of another merchant.

The routes and methods are read from the apps and the service descriptors, and each must
have a row in the expectation table below, so a new route cannot be forgotten. For every
row:

- a caller with an allowed role passes authentication and authorization (whatever the
  route then answers: 2xx, or a 404/409/422 about the data, never 401/403 or a 5xx);
- every other role is refused with 403 (PERMISSION_DENIED) and no token with 401
  (UNAUTHENTICATED), as problem+json, never data;
- the allowed roles of another merchant never see the first merchant's data: the first
  merchant's resources are refused (403) or, by the house rule, "not found" (404, so that
  another tenant's ids cannot be probed); ids are namespaced by merchant, so the same SKU
  id names the caller's own SKU, and any 2xx answer must carry none of the first
  merchant's ids (its merchant id, its buyer, its order).

Order runs in process (on a database of its own, with its real gRPC dependencies); the
others are the running service processes (`make up`), with a shop (merchant, SKU, flash
sale) set up through their APIs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import grpc
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from livecommerce.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from livecommerce.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from services.inventory.entrypoints.http import create_http_app as inventory_app
from services.inventory.settings import InventorySettings
from services.kit.identity import Role
from services.kit.testing import unique
from services.order.entrypoints.http import create_http_app as order_app
from services.order.settings import OrderSettings
from services.promotion.entrypoints.http import create_http_app as promotion_app
from services.promotion.settings import PromotionSettings
from services.referral.entrypoints.http import create_http_app as referral_app
from services.referral.settings import ReferralSettings
from tests.e2e.checkout_world import INVENTORY, PROMOTION, Shop
from tests.security.conftest import REFERRAL, order_client
from tests.security.world import PROBLEM_JSON, bearer, token_for

INVENTORY_GRPC = "127.0.0.1:50101"
PROMOTION_GRPC = "127.0.0.1:50103"

V, H, OP, A, P, S = (
    Role.VIEWER,
    Role.HOST,
    Role.OPERATOR,
    Role.MERCHANT_ADMIN,
    Role.OPS,
    Role.SERVICE,
)
ROLES = (V, H, OP, A, P, S)
MERCHANT_SCOPED = frozenset({V, H, OP, A})


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[Role]


def rule(*allowed: Role) -> Rule:
    return Rule(frozenset(allowed))


PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
SIGNED = {("POST", "/v1/payments/{provider}/notifications")}
"""Authenticated by the provider's signature, not a bearer token (tests/security/
test_webhooks.py): any caller without a valid signature is refused (401)."""

HTTP: dict[str, dict[tuple[str, str], Rule]] = {
    "inventory": {
        ("POST", "/v1/skus/{sku_id}/receipts"): rule(A, OP),
        ("GET", "/v1/skus/{sku_id}"): rule(A, OP),
        ("GET", "/v1/stock-levels/{sku_id}"): rule(A, OP),
        ("GET", "/v1/stock-levels"): rule(A, OP),
        ("POST", "/v1/sales"): rule(A, OP),
        ("GET", "/v1/sales/{sale_id}"): rule(A, OP, H),
        ("POST", "/v1/sales/{sale_id}/end"): rule(A, OP),
        ("POST", "/v1/sales/{sale_id}/rebuild"): rule(A),
        ("GET", "/v1/sales/{sale_id}/reconciliation"): rule(A, OP),
    },
    "order": {
        ("POST", "/v1/orders"): rule(V),
        ("GET", "/v1/orders/{order_id}"): rule(V, A, OP, P),
        ("GET", "/v1/orders"): rule(V, A, OP),
        ("GET", "/v1/orders/{order_id}/events"): rule(V, A, OP, P),
        ("POST", "/v1/orders/{order_id}/shipment"): rule(A, OP, P),
        ("POST", "/v1/orders/{order_id}/delivery"): rule(A, OP, P),
        ("POST", "/v1/orders/{order_id}/completion"): rule(V, A, OP, P),
        ("POST", "/v1/orders/{order_id}/refunds"): rule(V, A, OP, P),
        ("POST", "/v1/orders/{order_id}/returns"): rule(V),
        ("POST", "/v1/orders/{order_id}/returns/{return_id}/decision"): rule(A, OP, P),
        ("POST", "/v1/orders/{order_id}/returns/{return_id}/receipt"): rule(A, OP, P),
        ("POST", "/v1/orders/{order_id}/payments"): rule(V),
        ("POST", "/v1/orders/{order_id}/cancel"): rule(V),
    },
    "promotion": {
        ("PUT", "/v1/prices/{sku_id}"): rule(A, OP),
        ("GET", "/v1/prices/{sku_id}"): rule(A, OP),
        ("PUT", "/v1/room-specials/{promotion_id}"): rule(A, OP),
        ("PUT", "/v1/store-discounts/{promotion_id}"): rule(A, OP),
        ("GET", "/v1/price-promotions"): rule(A, OP),
        ("DELETE", "/v1/price-promotions/{promotion_id}"): rule(A, OP),
        ("POST", "/v1/coupon-templates"): rule(A, OP),
        ("GET", "/v1/coupon-templates/{template_id}"): rule(A, OP),
        ("POST", "/v1/coupon-templates/{template_id}/stop"): rule(A, OP),
        ("POST", "/v1/coupon-templates/{template_id}/rebuild"): rule(A),
        ("POST", "/v1/campaigns"): rule(A, OP),
        ("GET", "/v1/campaigns/{campaign_id}"): rule(A, OP, H),
        ("POST", "/v1/campaigns/{campaign_id}/start"): rule(A, OP, H),
        ("POST", "/v1/campaigns/{campaign_id}/stop"): rule(A, OP, H),
        ("POST", "/v1/group-offers"): rule(A, OP),
        ("POST", "/v1/merchants/{merchant_id}/coupon-templates/{template_id}/claims"): rule(V),
        ("GET", "/v1/merchants/{merchant_id}/coupons"): rule(V),
        ("GET", "/v1/merchants/{merchant_id}/group-offers/{offer_id}"): rule(V),
        ("POST", "/v1/merchants/{merchant_id}/group-offers/{offer_id}/groups"): rule(V),
        ("POST", "/v1/merchants/{merchant_id}/groups/{group_id}/members"): rule(V),
        ("GET", "/v1/merchants/{merchant_id}/groups/{group_id}"): rule(V),
    },
    "referral": {
        ("POST", "/v1/share-codes"): rule(V, H, OP, A),
        ("GET", "/v1/share-codes"): rule(V, H, OP, A),
        ("GET", "/v1/share-codes/{code}"): rule(V, H, OP, A),
        ("GET", "/v1/rooms/{room_id}/card.png"): rule(V, H, OP, A),
        ("GET", "/v1/me/earnings"): rule(V, H, OP, A),
        ("GET", "/v1/me/ledger"): rule(V, H, OP, A),
        ("POST", "/v1/me/withdrawals"): rule(V, H, OP, A),
        ("GET", "/v1/me/withdrawals"): rule(V, H, OP, A),
        ("PUT", "/v1/programme"): rule(A, P),
        ("GET", "/v1/programme"): rule(A, P),
        ("POST", "/v1/red-packet-campaigns"): rule(A, P),
        ("GET", "/v1/red-packet-campaigns/{campaign_id}"): rule(A, P),
        ("GET", "/v1/withdrawals"): rule(A, P),
        ("POST", "/v1/withdrawals/{withdrawal_id}/approve"): rule(A, P),
        ("POST", "/v1/withdrawals/{withdrawal_id}/reject"): rule(A, P),
        ("GET", "/v1/reviews"): rule(A, P),
        ("POST", "/v1/reviews/{order_id}/{decision}"): rule(A, P),
        ("GET", "/v1/reports/summary"): rule(A, P),
        ("GET", "/v1/leaderboards/rooms/{room_id}"): rule(V, H, OP, A),
        ("GET", "/v1/leaderboards/campaigns/{campaign_id}"): rule(V, H, OP, A),
    },
}

GRPC: dict[str, Rule] = {
    "/livecommerce.inventory.v1.InventoryService/Reserve": rule(S, P),
    "/livecommerce.inventory.v1.InventoryService/Confirm": rule(S, P),
    "/livecommerce.inventory.v1.InventoryService/Release": rule(S, P),
    "/livecommerce.inventory.v1.InventoryService/GetStock": rule(S, P, A, OP, H),
    "/livecommerce.inventory.v1.InventoryService/GetSale": rule(S, P, A, OP, H),
    "/livecommerce.inventory.v1.InventoryService/StreamStock": rule(S, P, A, OP, H),
    "/livecommerce.inventory.v1.InventoryService/ScheduleSale": rule(S, P, A),
    "/livecommerce.inventory.v1.InventoryService/EndSale": rule(S, P, A),
    "/livecommerce.promotion.v1.PromotionService/Quote": rule(S, P, A, OP),
    "/livecommerce.promotion.v1.PromotionService/PriceOrder": rule(S, P),
    "/livecommerce.promotion.v1.PromotionService/ReleaseCoupons": rule(S, P),
    "/livecommerce.promotion.v1.PromotionService/StartCampaign": rule(S, P, A, OP, H),
    "/livecommerce.promotion.v1.PromotionService/StopCampaign": rule(S, P, A, OP, H),
}

APPS: dict[str, tuple[Callable[[], FastAPI], str]] = {
    "inventory": (lambda: inventory_app(InventorySettings()), INVENTORY),
    "order": (lambda: order_app(OrderSettings()), ""),
    "promotion": (lambda: promotion_app(PromotionSettings()), PROMOTION),
    "referral": (lambda: referral_app(ReferralSettings()), REFERRAL),
}
GRPC_SERVICES = {
    INVENTORY_GRPC: (inventory_pb2, "InventoryService", inventory_pb2_grpc.InventoryServiceStub),
    PROMOTION_GRPC: (promotion_pb2, "PromotionService", promotion_pb2_grpc.PromotionServiceStub),
}


def routes_of(app: FastAPI) -> Iterator[tuple[str, str, APIRoute | None]]:
    for context in iter_route_contexts(app.routes):
        route = getattr(context, "route", None)
        path: str | None = context.path
        if path is None:
            continue
        for method in sorted(getattr(context, "methods", None) or ()):
            if method != "HEAD":
                yield method, path, route if isinstance(route, APIRoute) else None


def grpc_methods() -> Iterator[tuple[str, MethodDescriptor]]:
    for module, name, _ in GRPC_SERVICES.values():
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            yield f"/{service.full_name}/{method.name}", method


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_http_route_has_a_row_in_the_expectation_table(service: str) -> None:
    found = {(m, p) for m, p, _ in routes_of(APPS[service][0]())}

    assert found - PUBLIC - SIGNED == set(HTTP[service]), "add the new route to HTTP above"


def test_every_grpc_method_has_a_row_in_the_expectation_table() -> None:
    assert {name for name, _ in grpc_methods()} == set(GRPC)


# -- the world the callers act in -------------------------------------------------------


@dataclass
class World:
    shop: Shop
    foreign_merchant: str
    order_id: str
    buyer_id: str
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def merchant(self) -> str:
        return self.shop.merchant_id

    def known_ids(self) -> dict[str, str]:
        """The first merchant's ids by the name routes and requests give them."""
        return {
            "merchant_id": self.merchant,
            "sku_id": self.shop.sku_id,
            "sale_id": self.shop.sale_id,
            "campaign_id": self.shop.sale_id,
            "order_id": self.order_id,
            "room_id": self.shop.room_id,
        }

    def secrets(self) -> set[str]:
        """Ids of the first merchant's data that another merchant's caller must never see."""
        return {self.merchant, self.order_id, self.buyer_id}


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role | None
    merchant: str | None
    subject: str

    def headers(self) -> dict[str, str]:
        if self.role is None:
            return {}
        return bearer(token_for(self.role, self.merchant, self.subject))


def callers(world: World, allowed: frozenset[Role]) -> Iterator[tuple[Caller, str]]:
    """(caller, expectation): ``allowed``, ``refused`` (403), ``anonymous`` (401) or
    ``foreign`` (403/404, or no ids of the first merchant)."""
    for role in ROLES:
        subject = world.buyer_id if role is V else unique(role.value)
        merchant = world.merchant if role in MERCHANT_SCOPED else None
        yield (
            Caller(role.value, role, merchant, subject),
            "allowed" if role in allowed else ("refused"),
        )
    yield Caller("no token", None, None, ""), "anonymous"
    for role in sorted(allowed & MERCHANT_SCOPED):
        yield Caller(f"foreign {role.value}", role, world.foreign_merchant, unique("f")), "foreign"


# -- request bodies from the OpenAPI schema ----------------------------------------------


def example(schema: dict[str, Any], components: dict[str, Any], name: str = "") -> Any:
    """A small value that satisfies ``schema`` (enough to get past validation)."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[-1]], components, name)
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return example(options[0], components, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {
            k: example(v, components, k)
            for k, v in props.items()
            if k in schema.get("required", [])
        }
    if kind == "array":
        count = schema.get("minItems", 0)
        return [example(schema["items"], components, name) for _ in range(count)]
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return max(int(low), 1) if schema.get("maximum", 10**9) >= 1 else int(low)
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("format") == "date-time":
            return (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        if name == "currency":
            return "CNY"
        pattern = schema.get("pattern", "")
        value = f"x{uuid4().hex[:8]}"
        if pattern and not re.fullmatch(pattern.strip("^$"), value):
            value = "CNY" if re.fullmatch(pattern.strip("^$"), "CNY") else value
        return value[: schema.get("maxLength", 64)]
    return None


BODY_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {}


def now_plus(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def body_overrides(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    window = {"starts_at": now_plus(60), "ends_at": now_plus(120)}
    return {
        ("POST", "/v1/orders"): {
            "merchant_id": world.merchant,
            "room_id": world.shop.room_id,
            "channel": "app",
            "lines": [{"sku_id": world.shop.sku_id, "quantity": 1}],
        },
        ("POST", "/v1/sales"): {"sku_id": world.shop.sku_id, "quantity": 1, "per_user_limit": 1}
        | window,
        ("POST", "/v1/campaigns"): {"sku_id": world.shop.sku_id, "room_id": world.shop.room_id}
        | window,
        ("POST", "/v1/group-offers"): window,
        ("POST", "/v1/coupon-templates"): window,
        ("PUT", "/v1/room-specials/{promotion_id}"): window,
        ("PUT", "/v1/store-discounts/{promotion_id}"): window,
        ("POST", "/v1/red-packet-campaigns"): window,
    }


def request_for(
    method: str, path: str, route: APIRoute | None, openapi: dict[str, Any], world: World
) -> tuple[str, dict[str, Any] | None]:
    components = openapi.get("components", {}).get("schemas", {})
    operation = openapi["paths"][path][method.lower()]
    values = {**world.known_ids(), "provider": "sandbox", "decision": "approve"}
    filled = re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), f"x{uuid4().hex[:8]}"), path)
    query = [
        f"{p['name']}={example(p['schema'], components, p['name'])}"
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    ]
    url = filled + (f"?{'&'.join(query)}" if query else "")
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    body = None
    if content is not None:
        body = example(content["schema"], components)
        if isinstance(body, dict):
            body.update(body_overrides(world).get((method, path), {}))
    return url, body


# -- fixtures ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def world(
    http: httpx.AsyncClient, order_settings: OrderSettings
) -> AsyncIterator[tuple[World, httpx.AsyncClient]]:
    shop = await Shop.open(http, allocated=50, per_user_limit=5)
    buyer = shop.buyer()
    async with order_client(order_settings, buy_limit_per_user="1000/10 seconds") as order:
        placed = await order.post(
            "/v1/orders",
            json=buyer.order_body(),
            headers={**buyer.auth, "Idempotency-Key": uuid4().hex},
        )
        assert placed.status_code == 201, placed.text
        yield (
            World(shop, unique("foreign"), placed.json()["order_id"], buyer.buyer_id),
            order,
        )


def judge(
    where: str, caller: Caller, expectation: str, status: int, text: str, world: World
) -> str | None:
    """What is wrong with this answer, or None."""
    if status >= 500:
        return f"{where} as {caller.name}: {status} {text[:200]}"
    if expectation == "allowed":
        if status in (401, 403):
            return f"{where} as {caller.name} (allowed): refused {status} {text[:200]}"
        return None
    if expectation == "foreign":
        if status == 401:
            return f"{where} as {caller.name}: a valid token refused as unauthenticated"
        leaked = [s for s in world.secrets() if s in text] if status < 300 else []
        return f"{where} as {caller.name}: {status} shows {leaked}" if leaked else None
    wanted = {"refused": {403}, "anonymous": {401}}[expectation]
    if status not in wanted:
        return f"{where} as {caller.name} ({expectation}): {status} {text[:200]}"
    return None


async def test_every_http_route_admits_its_roles_and_refuses_everyone_else(
    world: tuple[World, httpx.AsyncClient], http: httpx.AsyncClient
) -> None:
    the_world, order = world
    wrong: list[str] = []
    calls = 0
    succeeded: set[tuple[str, str, str]] = set()
    for service, (build, base) in APPS.items():
        app = build()
        openapi = app.openapi()
        client = order if service == "order" else http
        for method, path, route in routes_of(app):
            if (method, path) in PUBLIC:
                continue
            allowed = (
                frozenset() if (method, path) in SIGNED else HTTP[service][(method, path)].allowed
            )
            for caller, expectation in callers(the_world, allowed):
                url, body = request_for(method, path, route, openapi, the_world)
                headers = {**caller.headers(), "Idempotency-Key": uuid4().hex}
                answer = await client.request(method, f"{base}{url}", json=body, headers=headers)
                calls += 1
                if expectation == "allowed" and answer.status_code < 300:
                    succeeded.add((service, method, path))
                if (method, path) in SIGNED and answer.status_code == 401:
                    continue
                problem = judge(
                    f"{service} {method} {path}",
                    caller,
                    expectation,
                    answer.status_code,
                    answer.text,
                    the_world,
                )
                if (
                    problem is None
                    and answer.status_code >= 400
                    and answer.headers.get("content-type") != PROBLEM_JSON
                ):
                    problem = f"{service} {method} {path}: {answer.status_code} not problem+json"
                if problem:
                    wrong.append(problem)
    assert calls > 400
    assert not wrong, "\n".join(wrong)
    rows = sum(len(table) for table in HTTP.values())
    assert len(succeeded) >= rows // 2, f"only {sorted(succeeded)} answered 2xx to allowed callers"


def grpc_request(method: MethodDescriptor, world: World) -> Message:
    """The method's request naming the first merchant and its shop's ids where it has them."""
    message: Message = {
        "ReserveRequest": inventory_pb2.ReserveRequest,
        "HoldRequest": inventory_pb2.HoldRequest,
        "ReleaseRequest": inventory_pb2.ReleaseRequest,
        "GetStockRequest": inventory_pb2.GetStockRequest,
        "GetSaleRequest": inventory_pb2.GetSaleRequest,
        "ScheduleSaleRequest": inventory_pb2.ScheduleSaleRequest,
        "QuoteRequest": promotion_pb2.QuoteRequest,
        "PriceOrderRequest": promotion_pb2.PriceOrderRequest,
        "ReleaseCouponsRequest": promotion_pb2.ReleaseCouponsRequest,
        "CampaignRequest": promotion_pb2.CampaignRequest,
    }[method.input_type.name]()
    for name, value in world.known_ids().items():
        if name in message.DESCRIPTOR.fields_by_name:
            setattr(message, name, value)
    return message


async def call_grpc(
    channel: grpc.aio.Channel, name: str, method: MethodDescriptor, request: Message, caller: Caller
) -> tuple[grpc.StatusCode, str]:
    metadata = [(k.lower(), v) for k, v in caller.headers().items()]
    output = getattr(
        inventory_pb2 if "inventory" in name else promotion_pb2, method.output_type.name
    )
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                name,
                request_serializer=type(request).SerializeToString,
                response_deserializer=output.FromString,
            )(request, metadata=metadata, timeout=5)
            async for reply in stream:
                return grpc.StatusCode.OK, str(reply)
            return grpc.StatusCode.OK, ""
        call = channel.unary_unary(
            name,
            request_serializer=type(request).SerializeToString,
            response_deserializer=output.FromString,
        )
        reply = await call(request, metadata=metadata, timeout=5)
        return grpc.StatusCode.OK, str(reply)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""


GRPC_STATUS = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
}


async def test_every_grpc_method_admits_its_roles_and_refuses_everyone_else(
    world: tuple[World, httpx.AsyncClient],
) -> None:
    the_world, _ = world
    wrong: list[str] = []
    channels = {target: grpc.aio.insecure_channel(target) for target in GRPC_SERVICES}
    try:
        for name, method in grpc_methods():
            target = INVENTORY_GRPC if "inventory" in name else PROMOTION_GRPC
            for caller, expectation in callers(the_world, GRPC[name].allowed):
                code, detail = await call_grpc(
                    channels[target], name, method, grpc_request(method, the_world), caller
                )
                status = GRPC_STATUS.get(code, 400)
                problem = judge(name, caller, expectation, status, detail, the_world)
                if problem:
                    wrong.append(f"{problem} ({code.name})")
    finally:
        for channel in channels.values():
            await channel.close()
    assert not wrong, "\n".join(wrong)
