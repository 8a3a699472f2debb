"""Promotion's HTTP API on the real Postgres and Redis: merchants set prices and create a
drop, buyers claim and see their coupons and open and join group buys; bad input is
problem+json and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.kit.identity import Role, TokenIssuer
from services.kit.testing import unique
from services.promotion.entrypoints.http import create_http_app
from services.promotion.settings import PromotionSettings
from services.promotion.tests.conftest import Clock, PromotionFactory
from services.promotion.tests.helpers import now

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Client:
    http: httpx.AsyncClient
    issuer: TokenIssuer
    merchant: str

    def auth(self, role: Role = Role.MERCHANT_ADMIN, merchant: str | None = None) -> dict[str, str]:
        token = self.issuer.mint(unique("user"), [role], merchant or self.merchant)
        return {"Authorization": f"Bearer {token}"}

    def buyer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint(name, [Role.VIEWER])}"}


@pytest_asyncio.fixture
async def client(make_promotion: PromotionFactory) -> AsyncIterator[Client]:
    async with make_promotion() as parts:
        app = create_http_app(parts.settings, parts)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://promotion"
            ) as http,
        ):
            yield Client(http, TokenIssuer(parts.settings), unique("m"))


def template(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template_id": "rain-1",
        "kind": "fixed_amount",
        "currency": "CNY",
        "amount_minor": 500,
        "valid_from": (now() - timedelta(minutes=1)).isoformat(),
        "valid_until": (now() + timedelta(days=1)).isoformat(),
        "quota": 2,
        "per_user_limit": 1,
    }
    body.update(changes)
    return body


async def test_a_merchant_sets_a_list_price_and_reads_it_back(client: Client) -> None:
    put = await client.http.put(
        "/v1/prices/LIP-01", json={"amount_minor": 9900, "currency": "CNY"}, headers=client.auth()
    )
    assert put.status_code == 200
    got = await client.http.get("/v1/prices/LIP-01", headers=client.auth(Role.OPERATOR))
    assert got.json() == {"sku_id": "LIP-01", "amount_minor": 9900, "currency": "CNY"}


async def test_buyers_claim_a_drop_until_it_is_sold_out_and_see_their_coupons(
    client: Client,
) -> None:
    created = await client.http.post("/v1/coupon-templates", json=template(), headers=client.auth())
    assert created.status_code == 201
    base = f"/v1/merchants/{client.merchant}/coupon-templates/rain-1/claims"
    answers = [
        (await client.http.post(base, json={"claim_id": f"c-{i}"}, headers=client.buyer(f"b{i}")))
        for i in range(3)
    ]
    assert [a.json()["outcome"] for a in answers] == ["claimed", "claimed", "sold_out"]
    limit = await client.http.post(base, json={"claim_id": "c-9"}, headers=client.buyer("b0"))
    assert limit.status_code == 409
    assert limit.headers["content-type"] == PROBLEM_JSON
    mine = await client.http.get(
        f"/v1/merchants/{client.merchant}/coupons", headers=client.buyer("b0")
    )
    assert [c["coupon_id"] for c in mine.json()] == ["c-0"]
    read = await client.http.get("/v1/coupon-templates/rain-1", headers=client.auth())
    assert read.json()["claimed"] == 2


async def test_a_buyers_coupons_and_a_merchants_promotions_come_a_page_at_a_time(
    client: Client,
) -> None:
    for name in ("drop-a", "drop-b", "drop-c"):
        body = template(template_id=name, per_user_limit=1)
        assert (
            await client.http.post("/v1/coupon-templates", json=body, headers=client.auth())
        ).status_code == 201
        claim = f"/v1/merchants/{client.merchant}/coupon-templates/{name}/claims"
        answer = await client.http.post(
            claim, json={"claim_id": f"{name}-1"}, headers=client.buyer("b0")
        )
        assert answer.json()["outcome"] == "claimed"
    wallet = f"/v1/merchants/{client.merchant}/coupons"
    pages = [
        (await client.http.get(wallet, params=q, headers=client.buyer("b0"))).json()
        for q in ({"limit": 2}, {"limit": 2, "offset": 2}, {"limit": 2, "offset": 4})
    ]
    ids = [[c["coupon_id"] for c in page] for page in pages]
    assert ids == [["drop-a-1", "drop-b-1"], ["drop-c-1"], []]
    too_big = await client.http.get(wallet, params={"limit": 100_000}, headers=client.buyer("b0"))
    assert too_big.status_code == 422
    for name in ("sd-1", "sd-2", "sd-3"):
        put = await client.http.put(
            f"/v1/store-discounts/{name}", json={"percent_bps": 500}, headers=client.auth()
        )
        assert put.status_code == 200
    second = await client.http.get(
        "/v1/price-promotions", params={"limit": 2, "offset": 1}, headers=client.auth()
    )
    assert [p["promotion_id"] for p in second.json()] == ["sd-2", "sd-3"]


async def test_claims_past_a_drops_rate_limits_get_429_with_retry_after_and_claim_nothing(
    make_promotion: PromotionFactory, promotion_settings: PromotionSettings
) -> None:
    settings = promotion_settings.model_copy(
        update={"claim_limit_per_user": "2/10 seconds", "claim_limit_per_address": "4/10 seconds"}
    )
    clock = Clock()
    async with make_promotion(clock=clock, settings=settings) as parts:
        app = create_http_app(settings, parts)
        transport = httpx.ASGITransport(app=app)  # every request from 127.0.0.1, not exempt
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://promotion") as http,
        ):
            client = Client(http, TokenIssuer(settings), unique("m"))
            for name in ("drop-a", "drop-b"):
                body = template(template_id=name, quota=10, valid_from=clock().isoformat())
                created = await http.post("/v1/coupon-templates", json=body, headers=client.auth())
                assert created.status_code == 201

            async def claim(drop: str, buyer: str, claim_id: str) -> httpx.Response:
                return await http.post(
                    f"/v1/merchants/{client.merchant}/coupon-templates/{drop}/claims",
                    json={"claim_id": claim_id},
                    headers=client.buyer(buyer),
                )

            answers = [await claim("drop-a", "b0", f"a-{i}") for i in range(3)]
            assert [a.status_code for a in answers] == [200, 409, 429]
            refused = answers[2]
            assert refused.headers["content-type"] == PROBLEM_JSON
            assert refused.headers["retry-after"] == "10"
            assert "user" in refused.json()["detail"]
            others = [await claim("drop-a", f"b{i}", f"o-{i}") for i in (1, 2, 3)]
            assert [a.status_code for a in others] == [200, 200, 429]
            assert "address" in others[2].json()["detail"]
            elsewhere = await claim("drop-b", "b0", "b-0")
            assert elsewhere.json()["outcome"] == "claimed"  # the limits are per drop
            read = await http.get("/v1/coupon-templates/drop-a", headers=client.auth())
            assert read.json()["claimed"] == 3
            clock.advance(10)
            again = await claim("drop-a", "b3", "o-3")
            assert again.json()["outcome"] == "claimed"
            clock.advance(10)
            unknown = [await claim("no-such-drop", "b4", f"u-{i}") for i in range(3)]
            assert [a.status_code for a in unknown] == [404, 404, 429]  # taps on nothing too


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("percent above 100 %", 422),
        ("a fixed coupon without amount", 422),
        ("no token", 401),
        ("a buyer creates it", 403),
    ],
)
async def test_a_bad_template_is_refused_with_problem_json_and_creates_nothing(
    client: Client, case: str, status: int
) -> None:
    body, headers = {
        "percent above 100 %": (template(kind="percent", percent_bps=20_000), client.auth()),
        "a fixed coupon without amount": (template(amount_minor=None), client.auth()),
        "no token": (template(), {}),
        "a buyer creates it": (template(), client.buyer("b")),
    }[case]
    refused = await client.http.post("/v1/coupon-templates", json=body, headers=headers)
    assert refused.status_code == status
    assert refused.headers["content-type"] == PROBLEM_JSON
    missing = await client.http.get("/v1/coupon-templates/rain-1", headers=client.auth())
    assert missing.status_code == 404


async def test_buyers_open_and_join_a_group_and_joining_twice_is_a_clear_conflict(
    client: Client,
) -> None:
    offer = await client.http.post(
        "/v1/group-offers",
        json={
            "offer_id": "duo",
            "sku_id": "TEA-01",
            "group_price": {"amount_minor": 1990, "currency": "CNY"},
            "required_members": 2,
            "duration_seconds": 600,
            "starts_at": (now() - timedelta(minutes=1)).isoformat(),
            "ends_at": (now() + timedelta(days=1)).isoformat(),
        },
        headers=client.auth(),
    )
    assert offer.status_code == 201
    buyer_base = f"/v1/merchants/{client.merchant}"
    opened = await client.http.post(
        f"{buyer_base}/group-offers/duo/groups",
        json={"group_id": "g-1"},
        headers=client.buyer("ann"),
    )
    assert opened.status_code == 201
    joined = await client.http.post(f"{buyer_base}/groups/g-1/members", headers=client.buyer("bo"))
    assert joined.json()["members"] == ["ann", "bo"]
    again = await client.http.post(f"{buyer_base}/groups/g-1/members", headers=client.buyer("bo"))
    assert again.status_code == 409
    assert "already" in again.json()["detail"]
