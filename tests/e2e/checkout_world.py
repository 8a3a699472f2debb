"""A merchant, a room and a flash sale set up through the public HTTP APIs of the running
service processes, and a buyer's client for the checkout: what the end-to-end tests of the
checkout path share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx

from devstack import stack as devstack_stack
from devstack import stream
from devstack.config import StackConfig
from services.kit.identity import Role, TokenIssuer
from services.kit.settings import ServiceSettings
from services.kit.testing import eventually, unique

INVENTORY = "http://127.0.0.1:8101"
ORDER = "http://127.0.0.1:8102"
PROMOTION = "http://127.0.0.1:8103"
SANDBOX = "http://127.0.0.1:8190"
READY = (INVENTORY, ORDER, PROMOTION, SANDBOX)


def start_stack_services() -> None:
    """The service processes as `make up` runs them, restarted to run the code as it is."""
    devstack_stack.start_services(StackConfig(), restart=True)


async def wait_ready(http: httpx.AsyncClient) -> None:
    """Every API the checkout path needs answers its readiness check (as the demo waits)."""
    await stream.wait_ready(http, READY, within=60.0)


def _ok(response: httpx.Response, *codes: int) -> dict[str, Any]:
    assert response.status_code in (codes or (200, 201)), (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Shop:
    """One merchant with one room and one SKU on a flash sale in that room."""

    http: httpx.AsyncClient
    issuer: TokenIssuer
    merchant_id: str
    room_id: str
    sku_id: str
    sale_id: str
    admin: dict[str, str]

    @classmethod
    async def open(
        cls,
        http: httpx.AsyncClient,
        *,
        stock: int = 100,
        allocated: int = 10,
        list_price: int = 9900,
        flash_price: int | None = 5900,
        per_user_limit: int = 2,
        hold_ttl_seconds: int = 900,
    ) -> Shop:
        issuer = TokenIssuer(ServiceSettings())
        merchant_id = unique("m")
        admin_token = issuer.mint(unique("admin"), [Role.MERCHANT_ADMIN], merchant_id)
        shop = cls(
            http=http,
            issuer=issuer,
            merchant_id=merchant_id,
            room_id=unique("room"),
            sku_id=unique("sku"),
            sale_id=unique("sale"),
            admin={"Authorization": f"Bearer {admin_token}"},
        )
        _ok(
            await http.post(
                f"{INVENTORY}/v1/skus/{shop.sku_id}/receipts",
                json={"quantity": stock},
                headers=shop.admin,
            )
        )
        _ok(
            await http.put(
                f"{PROMOTION}/v1/prices/{shop.sku_id}",
                json={"amount_minor": list_price, "currency": "CNY"},
                headers=shop.admin,
            )
        )
        now = datetime.now(UTC)
        campaign: dict[str, Any] = {
            "campaign_id": shop.sale_id,
            "sku_id": shop.sku_id,
            "room_id": shop.room_id,
            "quantity": allocated,
            "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "per_user_limit": per_user_limit,
            "hold_ttl_seconds": hold_ttl_seconds,
        }
        if flash_price is not None:
            campaign["flash_price"] = {"amount_minor": flash_price, "currency": "CNY"}
        _ok(await http.post(f"{PROMOTION}/v1/campaigns", json=campaign, headers=shop.admin))
        _ok(await http.post(f"{PROMOTION}/v1/campaigns/{shop.sale_id}/start", headers=shop.admin))
        return shop

    def buyer(self, name: str | None = None) -> Buyer:
        buyer_id = name or unique("buyer")
        token = self.issuer.mint(buyer_id, [Role.VIEWER])
        return Buyer(self, buyer_id, {"Authorization": f"Bearer {token}"})

    async def sale(self) -> dict[str, Any]:
        return _ok(await self.http.get(f"{INVENTORY}/v1/sales/{self.sale_id}", headers=self.admin))

    async def reconciliation(self) -> dict[str, Any]:
        return _ok(
            await self.http.get(
                f"{INVENTORY}/v1/sales/{self.sale_id}/reconciliation", headers=self.admin
            )
        )

    async def staff(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(f"{ORDER}/v1/orders/{path}", json=body, headers=self.admin)

    async def order(self, order_id: str) -> dict[str, Any]:
        return _ok(await self.http.get(f"{ORDER}/v1/orders/{order_id}", headers=self.admin))


@dataclass
class Buyer:
    shop: Shop
    buyer_id: str
    auth: dict[str, str]

    def order_body(self, quantity: int = 1, **extra: Any) -> dict[str, Any]:
        return {
            "merchant_id": self.shop.merchant_id,
            "room_id": self.shop.room_id,
            "channel": "app",
            "lines": [{"sku_id": self.shop.sku_id, "quantity": quantity}],
            **extra,
        }

    async def place(
        self, body: dict[str, Any] | None = None, key: str | None = None
    ) -> httpx.Response:
        headers = {**self.auth, "Idempotency-Key": key or f"key-{uuid4().hex}"}
        return await self.shop.http.post(
            f"{ORDER}/v1/orders", json=body or self.order_body(), headers=headers
        )

    async def place_ok(self, quantity: int = 1) -> dict[str, Any]:
        return _ok(await self.place(self.order_body(quantity)), 201)

    async def get(self, order_id: str) -> dict[str, Any]:
        return _ok(await self.shop.http.get(f"{ORDER}/v1/orders/{order_id}", headers=self.auth))

    async def pay(self, order_id: str, **knobs: Any) -> dict[str, Any]:
        """Open the payment and tap "pay" on the sandbox's hosted step."""
        payable = _ok(
            await self.shop.http.post(f"{ORDER}/v1/orders/{order_id}/payments", headers=self.auth)
        )
        _ok(await self.shop.http.post(payable["pay_url"], json=knobs))
        return payable

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.shop.http.post(f"{ORDER}/v1/orders/{path}", json=body, headers=self.auth)

    async def history(self, order_id: str) -> list[str]:
        """The types of the order's events, oldest first."""
        response = await self.shop.http.get(
            f"{ORDER}/v1/orders/{order_id}/events", headers=self.auth
        )
        assert response.status_code == 200, response.text
        return [str(e["type"]) for e in response.json()]

    async def history_ends_with(self, order_id: str, *types: str) -> None:
        """Wait until the order's last events are ``types``: a step that follows another
        (a refund after its cancellation) is recorded by a later append."""

        async def ended() -> bool:
            return (await self.history(order_id))[-len(types) :] == list(types)

        await eventually(ended, f"order {order_id} history to end with {types}")

    async def status_becomes(
        self, order_id: str, status: str, within_seconds: float = 20.0
    ) -> None:
        async def reached() -> bool:
            return bool((await self.get(order_id))["status"] == status)

        await eventually(reached, f"order {order_id} to be {status}", within=within_seconds)
