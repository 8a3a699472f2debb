"""Promotion's gRPC Quote on a real in-process server (no infrastructure: the quote is
pure): the reply is the domain's quote to the minor unit, bad input is refused with the
domain's status and its own words (never a traceback), and who may call what."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import pytest
import pytest_asyncio

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1 import promotion_pb2_grpc
from services.kit.grpc import authenticated_channel, start_grpc_server
from services.kit.identity import Role, TokenIssuer, TokenVerifier
from services.kit.settings import Environment
from services.promotion.adapters.protobuf import quote_from_proto, request_to_proto
from services.promotion.domain.quote import QuoteRequest, StackingRules, quote
from services.promotion.entrypoints.grpc import SERVICE_NAME, QuoteServicer
from services.promotion.settings import PromotionSettings
from services.promotion.tests.unit.quote_helpers import (
    AT,
    DAY,
    MERCHANT,
    cny,
    coupon,
    fixed,
    flash,
    line,
    min_price,
    percent,
    request,
    room_special,
    store,
    threshold,
)

if TYPE_CHECKING:
    from livecommerce.promotion.v1.promotion_pb2_grpc import PromotionServiceAsyncStub as Stub


@dataclass
class Api:
    target: str
    issuer: TokenIssuer
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def stub(self, token: str | None) -> Stub:
        if token is None:
            channel = grpc.aio.insecure_channel(self.target)
        else:
            channel = authenticated_channel(self.target, lambda: token)
        self.channels.append(channel)
        return promotion_pb2_grpc.PromotionServiceStub(channel)

    @property
    def service(self) -> Stub:
        """The order service: the caller a quote is for."""
        return self.stub(self.issuer.service_token("order"))

    def user(self, merchant_id: str | None, *roles: Role) -> Stub:
        return self.stub(self.issuer.mint("user-1", roles, merchant_id))


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    settings = PromotionSettings(environment=Environment.TEST)
    server, port = await start_grpc_server(
        service="promotion-grpc-test",
        address="127.0.0.1:0",
        verifier=TokenVerifier(settings),
        register=lambda s: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(
            QuoteServicer(),  # type: ignore[abstract]
            s,
        ),
        service_names=[SERVICE_NAME],
    )
    found = Api(f"127.0.0.1:{port}", TokenIssuer(settings))
    try:
        yield found
    finally:
        for channel in found.channels:
            await channel.close()
        await server.stop(None)


async def refusal(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error a call was refused with (it must be refused)."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value


def flash_and_coupon() -> QuoteRequest:
    """A flash-sale line, a room-special line and a plain line, with a percent coupon on
    the lines the flash sale leaves to it, and shipping."""
    return request(
        line("TEE", 2, 9_900),
        line("CAP", 3, 3_333, min_price(2_000)),
        line("SOCKS", 1, 1_001),
        flash_sale_prices=(flash("TEE", 5_900),),
        room_special_prices=(room_special("CAP", 2_999),),
        coupons=(coupon(percent(1_500, cap=5_000)),),
        shipping_fee=cny(800),
    )


# -- the quote ---------------------------------------------------------------------------


async def test_the_reply_is_the_domain_quote_to_the_minor_unit(api: Api) -> None:
    domain_request = flash_and_coupon()
    expected = quote(domain_request)

    reply = await api.service.Quote(request_to_proto(domain_request))

    assert quote_from_proto(reply) == expected
    assert reply.currency == "CNY"
    assert [
        (li.sku_id, li.unit_price.amount_minor, li.total.amount_minor) for li in reply.lines
    ] == [(li.sku_id, li.unit_price.amount, li.total.amount) for li in expected.lines]
    assert reply.lines[0].promotion.kind == pb.PROMOTION_KIND_FLASH_SALE
    assert reply.lines[0].coupon_share.amount_minor == 0  # no coupon on a flash-sale line
    assert not reply.lines[2].HasField("promotion")
    (applied,) = reply.coupons
    assert applied.discount.amount_minor > 0
    assert sum(share.amount_minor for share in applied.shares) == applied.discount.amount_minor
    assert sum(li.coupon_share.amount_minor for li in reply.lines) == (
        reply.coupon_discount.amount_minor
    )
    assert applied.reasons
    assert all(r.startswith("coupon c-1:") for r in applied.reasons)
    assert (
        reply.subtotal.amount_minor
        - reply.promotion_discount.amount_minor
        - reply.coupon_discount.amount_minor
        + reply.shipping_fee.amount_minor
        - reply.shipping_discount.amount_minor
        == reply.total.amount_minor
        == sum(li.total.amount_minor for li in reply.lines) + 800
    )
    assert list(reply.explanation) == list(expected.explanation)


async def test_the_exact_numbers_of_a_flash_price_and_a_coupon(api: Api) -> None:
    reply = await api.service.Quote(
        request_to_proto(
            request(
                line("TEE", 1, 10_000),
                line("CAP", 1, 3_000),
                line("BAG", 2, 2_000),
                flash_sale_prices=(flash("TEE", 6_000),),
                coupons=(coupon(fixed(1_000)),),
            )
        )
    )

    # TEE at the flash price takes no coupon; CAP 3000 and BAG 4000 share 1000 as 3:4.
    assert [li.total.amount_minor for li in reply.lines] == [6_000, 3_000 - 429, 4_000 - 571]
    assert [s.amount_minor for s in reply.coupons[0].shares] == [0, 429, 571]
    assert reply.subtotal.amount_minor == 17_000
    assert reply.promotion_discount.amount_minor == 4_000
    assert reply.coupon_discount.amount_minor == 1_000
    assert reply.total.amount_minor == 12_000


async def test_the_request_rules_replace_the_defaults(api: Api) -> None:
    domain_request = flash_and_coupon()
    rules = StackingRules(coupon_on_flash_sale=True)

    reply = await api.service.Quote(request_to_proto(domain_request, rules))

    assert quote_from_proto(reply) == quote(domain_request, rules)
    assert reply.lines[0].coupon_share.amount_minor > 0


async def test_a_merchant_user_may_quote_its_own_orders_without_naming_the_merchant(
    api: Api,
) -> None:
    message = request_to_proto(flash_and_coupon())
    message.merchant_id = ""

    for role in (Role.MERCHANT_ADMIN, Role.OPERATOR):
        reply = await api.user(MERCHANT, role).Quote(message)
        assert quote_from_proto(reply) == quote(flash_and_coupon())


# -- bad input ---------------------------------------------------------------------------


def _with(message: pb.QuoteRequest, change: str) -> pb.QuoteRequest:
    """``message`` with one thing wrong, by name."""
    broken = pb.QuoteRequest()
    broken.CopyFrom(message)
    match change:
        case "negative price":
            broken.lines[0].list_unit_price.amount_minor = -1
        case "percent over 100":
            broken.coupons[0].template.percent_bps = 10_001
        case "store discount over 100":
            broken.store_discounts.add(promotion_id="sd-1", percent_bps=12_000)
        case "duplicate sku":
            broken.lines.add().CopyFrom(broken.lines[0])
        case "no lines":
            del broken.lines[:]
        case "no time":
            broken.ClearField("at")
        case "no list price":
            broken.lines[0].ClearField("list_unit_price")
        case "unspecified coupon kind":
            broken.coupons[0].template.kind = pb.COUPON_KIND_UNSPECIFIED
        case "unknown promotion kind":
            broken.rules.ladder.append(99)  # type: ignore[arg-type]
        case "mixed currency":
            broken.lines[0].list_unit_price.currency = "USD"
        case "bad currency":
            broken.currency = "cny"
        case "zero quantity":
            broken.lines[0].quantity = 0
        case "floor over list":
            broken.lines[0].floor.min_unit_price.CopyFrom(
                pb.Money(amount_minor=10**6, currency="CNY")
            )
        case _:
            raise AssertionError(change)
    return broken


@pytest.mark.parametrize(
    "change",
    [
        "negative price",
        "percent over 100",
        "store discount over 100",
        "duplicate sku",
        "no lines",
        "no time",
        "no list price",
        "unspecified coupon kind",
        "unknown promotion kind",
        "mixed currency",
        "bad currency",
        "zero quantity",
        "floor over list",
    ],
)
async def test_a_malformed_request_is_invalid_argument_in_words(api: Api, change: str) -> None:
    message = _with(request_to_proto(flash_and_coupon()), change)

    error = await refusal(api.service.Quote(message))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details()
    assert "Traceback" not in (error.details() or "")
    assert "internal error" not in (error.details() or "")


@pytest.mark.parametrize(
    ("domain_request", "words"),
    [
        (request(line("TEE", 1, 9_900), coupons=(coupon(fixed(100), owner_id="other"),)), "buyer"),
        (
            request(
                line("TEE", 1, 9_900),
                coupons=(coupon(fixed(100, valid_from=AT + DAY, valid_until=AT + 2 * DAY)),),
            ),
            "not valid yet",
        ),
        (request(line("TEE", 1, 9_900), coupons=(coupon(threshold(20_000, 100)),)), "short"),
        (
            request(
                line("TEE", 1, 9_900),
                flash_sale_prices=(flash("TEE", 5_000),),
                coupons=(coupon(fixed(100)),),
            ),
            "flash",
        ),
        (
            request(
                line("TEE", 1, 9_900),
                coupons=(coupon(fixed(100), "c-1"), coupon(fixed(200), "c-2")),
            ),
            "does not stack",
        ),
    ],
)
async def test_a_coupon_that_cannot_be_used_is_failed_precondition_in_words(
    api: Api, domain_request: QuoteRequest, words: str
) -> None:
    error = await refusal(api.service.Quote(request_to_proto(domain_request)))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert words in (error.details() or "")
    assert "Traceback" not in (error.details() or "")


async def test_a_store_discount_is_priced_through_the_wire(api: Api) -> None:
    domain_request = request(line("TEE", 3, 999), store_discounts=(store(1_250),))

    reply = await api.service.Quote(request_to_proto(domain_request))

    assert quote_from_proto(reply) == quote(domain_request)
    assert reply.lines[0].unit_price.amount_minor == 999 - 124  # 12.5 % of 999, rounded down


# -- who may call ------------------------------------------------------------------------


async def test_a_viewer_is_permission_denied(api: Api) -> None:
    error = await refusal(
        api.user(MERCHANT, Role.VIEWER).Quote(request_to_proto(flash_and_coupon()))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_host_is_permission_denied(api: Api) -> None:
    error = await refusal(api.user(MERCHANT, Role.HOST).Quote(request_to_proto(flash_and_coupon())))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_no_token_is_unauthenticated(api: Api) -> None:
    error = await refusal(api.stub(None).Quote(request_to_proto(flash_and_coupon())))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_bad_token_is_unauthenticated(api: Api) -> None:
    error = await refusal(api.stub("not-a-jwt").Quote(request_to_proto(flash_and_coupon())))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_another_merchants_order_is_not_found(api: Api) -> None:
    foreign = api.user("m-2", Role.MERCHANT_ADMIN)

    error = await refusal(foreign.Quote(request_to_proto(flash_and_coupon())))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert MERCHANT in (error.details() or "")


async def test_a_service_must_name_the_merchant(api: Api) -> None:
    message = request_to_proto(flash_and_coupon())
    message.merchant_id = ""

    for stub in (api.service, api.user(None, Role.OPS)):
        error = await refusal(stub.Quote(message))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "merchant_id" in (error.details() or "")


async def test_ops_may_quote_for_any_merchant(api: Api) -> None:
    reply = await api.user(None, Role.OPS).Quote(request_to_proto(flash_and_coupon()))
    assert quote_from_proto(reply) == quote(flash_and_coupon())
