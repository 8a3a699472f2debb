"""PriceOrder, ReleaseCoupons and the campaign calls on a real in-process gRPC server over
Postgres and Redis: prices, live campaigns and their sales, specials, coupons locked for an
order and the errors the contract names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import pytest
import pytest_asyncio

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1 import promotion_pb2_grpc
from services.kit.grpc import authenticated_channel, start_grpc_server
from services.kit.identity import Role, TokenIssuer, TokenVerifier
from services.kit.testing import unique
from services.promotion.bootstrap import Promotion
from services.promotion.domain.coupons import ClaimCoupon
from services.promotion.domain.prices import SetRoomSpecialPrice
from services.promotion.entrypoints.grpc import SERVICE_NAME, PromotionServicer
from services.promotion.tests.conftest import FakeInventory, PromotionFactory
from services.promotion.tests.helpers import (
    cny,
    fixed_template,
    list_price,
    live_campaign,
    now,
)

if TYPE_CHECKING:
    from livecommerce.promotion.v1.promotion_pb2_grpc import PromotionServiceAsyncStub as Stub

ROOM = "room-1"


@dataclass
class Api:
    parts: Promotion
    stub: Stub
    merchant: str
    inventory: FakeInventory
    issuer: TokenIssuer
    target: str
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def as_user(self, *roles: Role, merchant: str | None = None) -> Stub:
        token = self.issuer.mint(unique("user"), roles, merchant or self.merchant)
        self.channels.append(authenticated_channel(self.target, lambda: token))
        return promotion_pb2_grpc.PromotionServiceStub(self.channels[-1])


@pytest_asyncio.fixture
async def api(make_promotion: PromotionFactory) -> AsyncIterator[Api]:
    inventory = FakeInventory()
    async with make_promotion(inventory=inventory) as parts:
        servicer = PromotionServicer(parts)
        server, port = await start_grpc_server(
            service="promotion-test",
            address="127.0.0.1:0",
            verifier=TokenVerifier(parts.settings),
            register=lambda s: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(
                servicer, s
            ),
            service_names=[SERVICE_NAME],
        )
        issuer = TokenIssuer(parts.settings)
        token = issuer.service_token("order")
        target = f"127.0.0.1:{port}"
        channel = authenticated_channel(target, lambda: token)
        stub: Stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        api = Api(parts, stub, unique("m"), inventory, issuer, target, [channel])
        try:
            yield api
        finally:
            for opened in api.channels:
                await opened.close()
            await server.stop(grace=None)


async def _coupon(api: Api, buyer: str, **template: object) -> str:
    tpl = await fixed_template(api.parts, api.merchant, **template)  # type: ignore[arg-type]
    claim_id = unique("cp")
    await api.parts.coupons.claim(ClaimCoupon(api.merchant, tpl.template_id, buyer, claim_id))
    return claim_id


async def _coupon_for_a_sku_on_sale(api: Api, buyer: str) -> str:
    """LIP-01 listed at 100.00 and live in ROOM, and a coupon the buyer claimed."""
    await list_price(api.parts, api.merchant, "LIP-01", 10_000)
    await live_campaign(api.parts, api.merchant, "LIP-01", ROOM)
    return await _coupon(api, buyer)


def _request(api: Api, buyer: str, *skus: str, **fields: object) -> pb.PriceOrderRequest:
    return pb.PriceOrderRequest(
        merchant_id=api.merchant,
        buyer_id=buyer,
        room_id=ROOM,
        lines=[pb.PriceOrderLine(sku_id=sku, quantity=2) for sku in skus],
        **fields,  # type: ignore[arg-type]
    )


async def test_price_order_prices_live_campaigns_specials_and_coupons_and_names_the_sales(
    api: Api,
) -> None:
    await list_price(api.parts, api.merchant, "LIP-01", 10_000)
    await list_price(api.parts, api.merchant, "TEA-01", 5_000)
    flash = await live_campaign(api.parts, api.merchant, "LIP-01", ROOM, flash_price=6_000)
    plain = await live_campaign(api.parts, api.merchant, "TEA-01", ROOM)
    await api.parts.prices.set_promotion(
        api.merchant,
        SetRoomSpecialPrice(api.merchant, "sp-1", "TEA-01", ROOM, cny(4_000)).event(),
    )
    coupon = await _coupon(api, "alice", amount=500)

    reply = await api.stub.PriceOrder(
        _request(api, "alice", "LIP-01", "TEA-01", coupon_ids=[coupon])
    )

    assert list(reply.sale_ids) == [flash, plain]
    lines = reply.quote.lines
    assert lines[0].unit_price.amount_minor == 6_000
    assert lines[0].promotion.kind == pb.PROMOTION_KIND_FLASH_SALE
    assert lines[1].unit_price.amount_minor == 4_000
    assert lines[1].promotion.kind == pb.PROMOTION_KIND_ROOM_SPECIAL
    assert reply.quote.coupon_discount.amount_minor == 500
    assert reply.quote.total.amount_minor == 12_000 + 8_000 - 500
    assert list(reply.locked_coupon_ids) == []


async def test_an_order_locks_its_coupons_idempotently_and_another_order_finds_them_locked(
    api: Api,
) -> None:
    coupon = await _coupon_for_a_sku_on_sale(api, "alice")
    request = _request(api, "alice", "LIP-01", coupon_ids=[coupon], order_id="o-1")

    first = await api.stub.PriceOrder(request)
    again = await api.stub.PriceOrder(request)
    assert list(first.locked_coupon_ids) == list(again.locked_coupon_ids) == [coupon]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.stub.PriceOrder(
            _request(api, "alice", "LIP-01", coupon_ids=[coupon], order_id="o-2")
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    released = await api.stub.ReleaseCoupons(
        pb.ReleaseCouponsRequest(merchant_id=api.merchant, order_id="o-1")
    )
    assert list(released.released_coupon_ids) == [coupon]
    assert not (
        await api.stub.ReleaseCoupons(
            pb.ReleaseCouponsRequest(merchant_id=api.merchant, order_id="o-1")
        )
    ).released_coupon_ids
    relocked = await api.stub.PriceOrder(
        _request(api, "alice", "LIP-01", coupon_ids=[coupon], order_id="o-2")
    )
    assert list(relocked.locked_coupon_ids) == [coupon]


async def test_an_order_priced_again_without_its_coupon_releases_it_and_one_without_locks_none(
    api: Api,
) -> None:
    coupon = await _coupon_for_a_sku_on_sale(api, "alice")
    with_coupon = _request(api, "alice", "LIP-01", coupon_ids=[coupon], order_id="o-1")
    assert list((await api.stub.PriceOrder(with_coupon)).locked_coupon_ids) == [coupon]

    without = await api.stub.PriceOrder(_request(api, "alice", "LIP-01", order_id="o-1"))

    assert not without.locked_coupon_ids
    other = await api.stub.PriceOrder(
        _request(api, "alice", "LIP-01", coupon_ids=[coupon], order_id="o-2")
    )
    assert list(other.locked_coupon_ids) == [coupon]  # released by o-1's second pricing
    plain = await api.stub.PriceOrder(_request(api, "alice", "LIP-01", order_id="o-3"))
    assert not plain.locked_coupon_ids
    assert not await api.parts.coupon_ledger.order_holds_coupons(api.merchant, "o-3")


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("no campaign", grpc.StatusCode.FAILED_PRECONDITION, "is not on sale in room room-1"),
        ("no price", grpc.StatusCode.NOT_FOUND, "has no list price"),
        ("other buyer's coupon", grpc.StatusCode.FAILED_PRECONDITION, "not the buyer's"),
        ("unknown coupon", grpc.StatusCode.NOT_FOUND, "not found"),
        ("duplicate SKU", grpc.StatusCode.INVALID_ARGUMENT, "two lines"),
        ("no merchant", grpc.StatusCode.INVALID_ARGUMENT, "merchant_id is required"),
        ("unknown group", grpc.StatusCode.NOT_FOUND, "not found"),
    ],
)
async def test_price_order_refuses_what_the_contract_names_with_its_status(
    api: Api, case: str, code: grpc.StatusCode, words: str
) -> None:
    await list_price(api.parts, api.merchant, "LIP-01", 10_000)
    await list_price(api.parts, api.merchant, "NEW-01", 10_000)
    await live_campaign(api.parts, api.merchant, "LIP-01", ROOM)
    coupon = await _coupon(api, "bob")
    request = {
        "no campaign": _request(api, "alice", "NEW-01"),
        "no price": _request(api, "alice", "GHOST-01"),
        "other buyer's coupon": _request(api, "alice", "LIP-01", coupon_ids=[coupon]),
        "unknown coupon": _request(api, "alice", "LIP-01", coupon_ids=["nope"]),
        "duplicate SKU": _request(api, "alice", "LIP-01", "LIP-01"),
        "no merchant": pb.PriceOrderRequest(
            buyer_id="alice", lines=[pb.PriceOrderLine(sku_id="LIP-01", quantity=1)]
        ),
        "unknown group": _request(api, "alice", "LIP-01", group_id="nope"),
    }[case]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.stub.PriceOrder(request)
    assert refused.value.code() == code
    assert words in (refused.value.details() or "")


async def test_a_buyer_role_may_not_price_orders_and_another_merchant_finds_nothing(
    api: Api,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await api.as_user(Role.VIEWER).PriceOrder(_request(api, "alice", "LIP-01"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    campaign = await live_campaign(api.parts, api.merchant, "LIP-01", ROOM)
    other = api.as_user(Role.MERCHANT_ADMIN, merchant=unique("m"))
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await other.StopCampaign(pb.CampaignRequest(merchant_id=api.merchant, campaign_id=campaign))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_campaign_started_early_sells_at_once_and_stopping_ends_its_sale(api: Api) -> None:
    await list_price(api.parts, api.merchant, "LIP-01", 10_000)
    campaign = await live_campaign(api.parts, api.merchant, "LIP-01", ROOM, starts_in=3600)
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await api.stub.PriceOrder(_request(api, "alice", "LIP-01"))
    assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    request = pb.CampaignRequest(merchant_id=api.merchant, campaign_id=campaign, room_id=ROOM)
    host = api.as_user(Role.HOST)
    for rpc in (host.StartCampaign, host.StopCampaign):
        another_room = pb.CampaignRequest(
            merchant_id=api.merchant, campaign_id=campaign, room_id="another-room"
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rpc(another_room)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await api.parts.campaign_book.campaign(api.merchant, campaign)).started_at is None

    started = await host.StartCampaign(request)
    assert started.state == "live"
    assert list((await api.stub.PriceOrder(_request(api, "alice", "LIP-01"))).sale_ids) == [
        campaign
    ]
    stopped = await host.StopCampaign(request)
    assert stopped.state == "ended"
    assert (api.merchant, campaign) in api.inventory.ended
    assert (await host.StopCampaign(request)).state == "ended"
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await api.stub.PriceOrder(_request(api, "alice", "LIP-01"))
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert now() < api.inventory.sales[(api.merchant, campaign)].starts_at
