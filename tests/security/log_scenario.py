"""A scenario run in a process of its own by test_secrets_stay_out_of_logs.py: JSON logging
configured as a service configures it, then the order API in process serving requests that
carry a bearer token and payment notifications signed with the webhook secret, including
refused ones and ones that fail on a dependency that is down. What the process prints is
the service's log."""

from __future__ import annotations

import asyncio
import json
import os
import time
from uuid import uuid4

import httpx

from services.kit.identity import Role
from services.kit.logging import configure_logging
from services.order.entrypoints.http import create_http_app
from services.order.sandbox.signing import signed_headers
from services.order.settings import OrderSettings
from tests.security.world import bearer, token_for

NOTIFY = "/v1/payments/sandbox/notifications"


async def main() -> None:
    settings = OrderSettings()
    configure_logging(settings.service_name, "DEBUG")
    secret = settings.sandbox_signing_secret.get_secret_value()
    token = os.environ["SCENARIO_BEARER_TOKEN"]
    app = create_http_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o") as c,
    ):
        auth = {"Authorization": f"Bearer {token}"}
        await c.post(
            "/v1/orders",
            json={
                "merchant_id": "m1",
                "room_id": "r1",
                "channel": "app",
                "lines": [{"sku_id": "SKU-1", "quantity": 1}],
            },
            headers={**auth, "Idempotency-Key": uuid4().hex},
        )
        await c.get("/v1/orders/o-unknown", headers=auth)
        await c.get("/v1/orders", headers={"Authorization": f"Bearer {token}x"})
        staff = bearer(token_for(Role.OPERATOR, "m1"))
        await c.get("/v1/orders", headers=staff)
        body = json.dumps(
            {
                "amount_minor": 100,
                "currency": "CNY",
                "notification_id": str(uuid4()),
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "order_id": "o-unknown",
                "payment_id": "o-unknownp1",
                "provider_transaction_id": "",
                "status": "succeeded",
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        await c.post(NOTIFY, content=body, headers=signed_headers(secret, int(time.time()), body))
        await c.post(NOTIFY, content=body, headers=signed_headers(secret, 1, body))
        await c.post(NOTIFY, content=body, headers=signed_headers(secret + "x", 1, body))
        await c.get("/readyz")


if __name__ == "__main__":
    asyncio.run(main())
