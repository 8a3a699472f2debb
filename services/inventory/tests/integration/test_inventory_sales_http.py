"""Inventory's HTTP API for operators' flash sales over a real Postgres and Redis: scheduling,
reading, ending, reconciling and rebuilding a sale, who may do it, and that every refusal is
problem+json. Buyers' holds are made through the service's own FlashSales (the gRPC path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.inventory.bootstrap import Inventory as Parts
from services.inventory.domain.sale import PerUserLimitError, ReleaseReason, ReserveStock
from services.inventory.entrypoints.http import create_http_app
from services.inventory.settings import InventorySettings
from services.kit.identity import Role, TokenIssuer
from services.kit.testing import unique

PROBLEM_JSON = "application/problem+json"
SKU = "TEE-RED-M"


@dataclass(frozen=True)
class Operators:
    client: httpx.AsyncClient
    issuer: TokenIssuer
    parts: Parts
    """The app's own parts, to make buyers' holds behind the operators' API."""

    def auth(self, merchant_id: str, role: Role = Role.MERCHANT_ADMIN) -> dict[str, str]:
        token = self.issuer.mint(unique("user"), [role], merchant_id)
        return {"Authorization": f"Bearer {token}"}

    async def merchant_with_stock(self, on_hand: int = 10) -> str:
        merchant = unique("merchant")
        received = await self.client.post(
            f"/v1/skus/{SKU}/receipts", json={"quantity": on_hand}, headers=self.auth(merchant)
        )
        assert received.status_code == 201
        return merchant

    async def on_hand(self, merchant: str) -> int:
        response = await self.client.get(f"/v1/skus/{SKU}", headers=self.auth(merchant))
        assert response.status_code == 200
        on_hand: int = response.json()["on_hand"]
        return on_hand

    async def schedule(
        self, merchant: str, role: Role = Role.MERCHANT_ADMIN, **changes: Any
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/sales", json=new_sale(**changes), headers=self.auth(merchant, role)
        )

    async def hold(self, merchant: str, sale_id: str, user_id: str, quantity: int) -> str:
        hold_id = unique("hold")
        reservation = await self.parts.flash_sales.reserve(
            ReserveStock(merchant, sale_id, user_id, quantity, hold_id)
        )
        assert reservation.reserved
        return hold_id


def new_sale(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "sale_id": "drop-1",
        "sku_id": SKU,
        "quantity": 6,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "per_user_limit": 3,
    }
    return body | changes


def counts(body: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (body["allocated"], body["available"], body["held"], body["sold"], body["returned"])


def assert_problem(response: httpx.Response, status: int, title: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    if title is not None:
        assert body["title"] == title


@pytest_asyncio.fixture(scope="module")
async def operators(inventory_settings: InventorySettings) -> AsyncIterator[Operators]:
    app = create_http_app(inventory_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://inventory"
        ) as client,
    ):
        yield Operators(client, TokenIssuer(inventory_settings), app.state.inventory)


async def test_scheduling_a_sale_sets_units_aside_from_the_sku_and_answers_its_counts(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)

    created = await operators.schedule(merchant, Role.OPERATOR, buckets=2)
    read = await operators.client.get("/v1/sales/drop-1", headers=operators.auth(merchant))

    assert created.status_code == 201
    body = created.json()
    assert (body["sale_id"], body["sku_id"], body["state"]) == ("drop-1", SKU, "open")
    assert counts(body) == (6, 6, 0, 0, 0)
    assert (body["per_user_limit"], body["buckets"]) == (3, 2)
    assert read.status_code == 200
    assert read.json() == body
    assert await operators.on_hand(merchant) == 4


async def test_a_sale_starting_later_is_scheduled_until_it_opens(operators: Operators) -> None:
    merchant = await operators.merchant_with_stock(10)
    later = datetime.now(UTC) + timedelta(hours=1)

    created = await operators.schedule(
        merchant,
        starts_at=later.isoformat(),
        ends_at=(later + timedelta(hours=1)).isoformat(),
    )

    assert created.status_code == 201
    assert created.json()["state"] == "scheduled"


async def test_scheduling_the_same_sale_id_again_is_a_conflict_and_takes_nothing(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)
    first = new_sale(quantity=3)
    await operators.schedule(merchant, **first)

    again = await operators.schedule(merchant, **(first | {"quantity": 4}))

    assert_problem(again, 409, "Already exists")
    assert await operators.on_hand(merchant) == 7


async def test_repeating_the_same_sale_answers_it_again_and_takes_nothing_more(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)
    body = new_sale(quantity=3)
    created = await operators.schedule(merchant, **body)

    again = await operators.schedule(merchant, **body)

    assert created.status_code == again.status_code == 201
    assert again.json() == created.json()
    assert await operators.on_hand(merchant) == 7


async def test_a_sale_with_a_bad_window_or_limit_is_refused_with_422_and_takes_nothing(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)
    now = datetime.now(UTC)

    refused = [
        await operators.schedule(
            merchant,
            starts_at=(now - timedelta(hours=2)).isoformat(),
            ends_at=(now - timedelta(hours=1)).isoformat(),
        ),
        await operators.schedule(
            merchant,
            starts_at=(now + timedelta(hours=2)).isoformat(),
            ends_at=(now + timedelta(hours=1)).isoformat(),
        ),
        await operators.schedule(
            merchant,
            starts_at=now.replace(tzinfo=None).isoformat(),
            ends_at=(now + timedelta(hours=1)).replace(tzinfo=None).isoformat(),
        ),
        await operators.schedule(merchant, per_user_limit=0),
        await operators.schedule(merchant, quantity=0),
        await operators.schedule(merchant, sale_id="two words"),
        await operators.schedule(merchant, quantity=2, buckets=3),
    ]

    for response in refused:
        assert_problem(response, 422)
    missing = await operators.client.get("/v1/sales/drop-1", headers=operators.auth(merchant))
    assert_problem(missing, 404)
    assert await operators.on_hand(merchant) == 10


async def test_allocating_more_than_is_on_hand_is_a_failed_precondition_conflict(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(5)

    too_many = await operators.schedule(merchant, quantity=6)

    assert_problem(too_many, 409, "Precondition failed")
    assert await operators.on_hand(merchant) == 5


async def test_a_sale_of_an_unknown_sku_is_not_found(operators: Operators) -> None:
    merchant = await operators.merchant_with_stock(5)

    unknown = await operators.schedule(merchant, sku_id="NEVER-RECEIVED")

    assert_problem(unknown, 404, "Not found")


async def test_an_unknown_sale_or_another_merchants_sale_is_not_found(
    operators: Operators,
) -> None:
    owner = await operators.merchant_with_stock(10)
    stranger = await operators.merchant_with_stock(10)
    await operators.schedule(owner)
    theirs = operators.auth(stranger)

    responses = [
        await operators.client.get("/v1/sales/no-such-sale", headers=operators.auth(owner)),
        await operators.client.get("/v1/sales/drop-1", headers=theirs),
        await operators.client.post("/v1/sales/drop-1/end", headers=theirs),
        await operators.client.get("/v1/sales/drop-1/reconciliation", headers=theirs),
        await operators.client.post("/v1/sales/drop-1/rebuild", headers=theirs),
    ]

    for response in responses:
        assert_problem(response, 404)
    mine = await operators.client.get("/v1/sales/drop-1", headers=operators.auth(owner))
    assert mine.json()["state"] == "open"
    assert await operators.on_hand(stranger) == 10


async def test_ending_a_sale_returns_its_unsold_units_to_the_sku_and_later_releases_too(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)
    await operators.schedule(merchant, quantity=6)
    sold = await operators.hold(merchant, "drop-1", "buyer-1", 2)
    await operators.parts.flash_sales.confirm(merchant, sold)
    held = await operators.hold(merchant, "drop-1", "buyer-2", 1)
    headers = operators.auth(merchant, Role.OPERATOR)

    ended = await operators.client.post("/v1/sales/drop-1/end", headers=headers)
    on_hand_after_end = await operators.on_hand(merchant)
    again = await operators.client.post("/v1/sales/drop-1/end", headers=headers)
    reconciled = await operators.client.get("/v1/sales/drop-1/reconciliation", headers=headers)
    await operators.parts.flash_sales.release(merchant, held, ReleaseReason.CANCELLED)
    read = await operators.client.get("/v1/sales/drop-1", headers=headers)

    assert ended.status_code == 200
    assert ended.json()["state"] == "ended"
    assert counts(ended.json()) == (6, 0, 1, 2, 3)
    assert on_hand_after_end == 4 + 3
    assert again.status_code == 200
    assert again.json() == ended.json()
    assert reconciled.json() == {"sale_id": "drop-1", "in_agreement": True, "drifts": []}
    assert counts(read.json()) == (6, 0, 0, 2, 4)
    assert await operators.on_hand(merchant) == 4 + 4


async def test_a_live_sale_with_holds_is_in_agreement_with_the_event_store(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)
    await operators.schedule(merchant, quantity=8, buckets=2)
    first = await operators.hold(merchant, "drop-1", "buyer-1", 3)
    await operators.hold(merchant, "drop-1", "buyer-2", 2)
    await operators.parts.flash_sales.confirm(merchant, first)

    reconciled = await operators.client.get(
        "/v1/sales/drop-1/reconciliation", headers=operators.auth(merchant, Role.OPERATOR)
    )
    read = await operators.client.get("/v1/sales/drop-1", headers=operators.auth(merchant))

    assert reconciled.status_code == 200
    assert reconciled.json() == {"sale_id": "drop-1", "in_agreement": True, "drifts": []}
    assert counts(read.json()) == (8, 3, 2, 3, 0)


async def test_a_merchant_admin_rebuilds_a_sale_from_events_and_it_stays_in_agreement(
    operators: Operators,
) -> None:
    merchant = await operators.merchant_with_stock(10)
    await operators.schedule(merchant, quantity=6, per_user_limit=2)
    await operators.hold(merchant, "drop-1", "buyer-1", 2)

    by_operator = await operators.client.post(
        "/v1/sales/drop-1/rebuild", headers=operators.auth(merchant, Role.OPERATOR)
    )
    rebuilt = await operators.client.post(
        "/v1/sales/drop-1/rebuild", headers=operators.auth(merchant)
    )

    assert_problem(by_operator, 403, "Permission denied")
    assert rebuilt.status_code == 200
    assert rebuilt.json() == {"sale_id": "drop-1", "in_agreement": True, "drifts": []}
    with pytest.raises(PerUserLimitError):  # the buyer's count survived the rebuild
        await operators.parts.flash_sales.reserve(
            ReserveStock(merchant, "drop-1", "buyer-1", 1, unique("hold"))
        )
    read = await operators.client.get("/v1/sales/drop-1", headers=operators.auth(merchant))
    assert counts(read.json()) == (6, 4, 2, 0, 0)


async def test_a_viewer_is_forbidden_every_sale_route(operators: Operators) -> None:
    merchant = await operators.merchant_with_stock(10)
    await operators.schedule(merchant)
    viewer = operators.auth(merchant, Role.VIEWER)

    responses = [
        await operators.schedule(merchant, Role.VIEWER, sale_id="drop-2"),
        await operators.client.get("/v1/sales/drop-1", headers=viewer),
        await operators.client.post("/v1/sales/drop-1/end", headers=viewer),
        await operators.client.get("/v1/sales/drop-1/reconciliation", headers=viewer),
        await operators.client.post("/v1/sales/drop-1/rebuild", headers=viewer),
    ]

    for response in responses:
        assert_problem(response, 403, "Permission denied")
    still = await operators.client.get("/v1/sales/drop-1", headers=operators.auth(merchant))
    assert still.json()["state"] == "open"
    assert await operators.on_hand(merchant) == 4


async def test_a_caller_without_a_token_gets_a_401_problem(operators: Operators) -> None:
    anonymous = [
        await operators.client.post("/v1/sales", json=new_sale()),
        await operators.client.get("/v1/sales/drop-1"),
        await operators.client.post("/v1/sales/drop-1/end"),
    ]

    for response in anonymous:
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
