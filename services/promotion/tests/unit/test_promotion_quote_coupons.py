"""Coupons on a quote: each kind, thresholds, caps, scope, validity, floors, stacking, and
the exact split of a coupon across lines (fen)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from services.kit.errors import PreconditionFailedError
from services.promotion.domain.quote import (
    CouponNotOwnedError,
    CouponNotStackableError,
    CouponOutOfScopeError,
    CouponOutsideValidityError,
    CouponTemplate,
    CouponThresholdNotMetError,
    Quote,
    QuoteLine,
    StackingRules,
    quote,
)
from services.promotion.tests.unit.quote_helpers import (
    AT,
    DAY,
    cny,
    coupon,
    fixed,
    flash,
    free_shipping,
    line,
    min_price,
    percent,
    request,
    room_special,
    scope,
    store,
    threshold,
)

A = line("sku-a", 2, 1000)


def assert_adds_up(result: Quote) -> None:
    assert result.total == (
        result.subtotal
        - result.promotion_discount
        - result.coupon_discount
        + result.shipping_fee
        - result.shipping_discount
    )
    for applied in result.coupons:
        assert sum(share.amount for share in applied.shares) == applied.discount.amount


@pytest.mark.parametrize(
    ("of", "shipping", "coupon_discount", "shipping_discount", "total"),
    [
        pytest.param(fixed(300), 0, 300, 0, 1700, id="fixed-amount"),
        pytest.param(percent(1500), 0, 300, 0, 1700, id="percent-uncapped"),
        pytest.param(percent(1500, cap=200), 0, 200, 0, 1800, id="percent-capped"),
        pytest.param(percent(1000, cap=500), 0, 200, 0, 1800, id="percent-under-its-cap"),
        pytest.param(percent(10_000), 0, 2000, 0, 0, id="percent-hundred-makes-it-free"),
        pytest.param(threshold(2000, 300), 0, 300, 0, 1700, id="threshold-met-exactly"),
        pytest.param(threshold(1500, 300), 0, 300, 0, 1700, id="threshold-passed"),
        pytest.param(free_shipping(), 800, 0, 800, 2000, id="free-shipping"),
        pytest.param(
            free_shipping(threshold=cny(2000)), 800, 0, 800, 2000, id="free-shipping-over-x"
        ),
        pytest.param(free_shipping(), 0, 0, 0, 2000, id="free-shipping-with-nothing-to-free"),
        pytest.param(fixed(300), 800, 300, 0, 2500, id="shipping-is-not-discounted-by-others"),
    ],
)
def test_each_coupon_kind_takes_its_discount(
    of: CouponTemplate, shipping: int, coupon_discount: int, shipping_discount: int, total: int
) -> None:
    result = quote(request(A, coupons=(coupon(of),), shipping_fee=cny(shipping)))

    assert result.coupon_discount.amount == coupon_discount
    assert result.shipping_discount.amount == shipping_discount
    assert result.total.amount == total
    assert_adds_up(result)


def test_a_capped_percent_coupon_says_it_was_capped() -> None:
    result = quote(request(A, coupons=(coupon(percent(1500, cap=200)),)))

    assert "coupon c-1: 15% of CNY 2000 is CNY 300" in result.explanation
    assert "coupon c-1: capped at CNY 200" in result.explanation


@pytest.mark.parametrize(
    ("promotions", "short"),
    [
        pytest.param({}, 1, id="one-fen-short"),
        pytest.param({"store_discounts": (store(1000),)}, 201, id="counted-after-promotions"),
        pytest.param(
            {"room_special_prices": (room_special("sku-a", 900),)},
            201,
            id="counted-after-room-special",
        ),
    ],
)
def test_a_threshold_coupon_refuses_an_order_below_its_threshold(
    promotions: dict[str, Any], short: int
) -> None:
    order = request(A, coupons=(coupon(threshold(2001, 300)),), **promotions)

    with pytest.raises(CouponThresholdNotMetError, match=f"CNY {short} short"):
        quote(order)


@pytest.mark.parametrize(
    ("amounts", "of", "shares"),
    [
        pytest.param([333, 333, 334], percent(1000), [33, 33, 34], id="10pct-of-333-333-334"),
        pytest.param([1, 1, 1], percent(5000), [1, 0, 0], id="50pct-of-three-single-fen"),
        pytest.param([100, 100, 100], fixed(100), [34, 33, 33], id="ties-go-to-earlier-line"),
        pytest.param([300, 500, 1100], fixed(7), [1, 2, 4], id="largest-remainder-wins"),
        pytest.param([100, 200, 700], fixed(10), [1, 2, 7], id="exact-proportions"),
        pytest.param([999, 1, 1], percent(333), [33, 0, 0], id="3.33pct-rounds-down"),
        pytest.param([0, 500, 500], fixed(3), [0, 2, 1], id="a-free-line-gets-nothing"),
    ],
)
def test_a_coupon_is_split_across_lines_so_the_parts_sum_exactly(
    amounts: list[int], of: CouponTemplate, shares: list[int]
) -> None:
    lines = [line(f"sku-{i}", 1, amount) for i, amount in enumerate(amounts)]

    result = quote(request(*lines, coupons=(coupon(of),)))

    assert [quoted.coupon_share.amount for quoted in result.lines] == shares
    assert result.coupon_discount.amount == sum(shares)
    assert result.coupons[0].shares == tuple(cny(share) for share in shares)
    assert_adds_up(result)


B = line("sku-b", 1, 500)


@pytest.mark.parametrize(
    ("lines", "of", "request_fields", "shares"),
    [
        pytest.param([A, B], fixed(300), {}, [240, 60], id="merchant-scope-covers-all"),
        pytest.param([A, B], fixed(300, scope=scope(None, "sku-b")), {}, [0, 300], id="sku-scope"),
        pytest.param(
            [A, B], fixed(300, scope=scope("room-1")), {}, [240, 60], id="room-scope-in-room"
        ),
        pytest.param(
            [A, B],
            fixed(300, scope=scope("room-1", "sku-a")),
            {},
            [300, 0],
            id="room-and-sku-scope",
        ),
    ],
)
def test_a_coupon_applies_only_to_the_lines_in_its_scope(
    lines: list[QuoteLine], of: CouponTemplate, request_fields: dict[str, Any], shares: list[int]
) -> None:
    result = quote(request(*lines, coupons=(coupon(of),), **request_fields))

    assert [quoted.coupon_share.amount for quoted in result.lines] == shares


@pytest.mark.parametrize(
    ("of", "request_fields", "message"),
    [
        pytest.param(
            fixed(300, scope=scope(None, "sku-z")), {}, "covers none", id="no-sku-in-scope"
        ),
        pytest.param(
            fixed(300, scope=scope("room-2")), {}, "only for orders from room room-2", id="room"
        ),
        pytest.param(
            fixed(300, scope=scope("room-1")),
            {"room_id": None},
            "only for orders from room room-1",
            id="room-coupon-outside-any-room",
        ),
        pytest.param(
            fixed(300, scope=scope(merchant_id="m-2")), {}, "another merchant", id="merchant"
        ),
        pytest.param(
            fixed(300),
            {"flash_sale_prices": (flash("sku-a", 600),)},
            "only lines at a flash-sale price",
            id="only-flash-sale-lines",
        ),
    ],
)
def test_a_coupon_out_of_scope_is_refused(
    of: CouponTemplate, request_fields: dict[str, Any], message: str
) -> None:
    order = request(A, coupons=(coupon(of),), **request_fields)

    with pytest.raises(CouponOutOfScopeError, match=message) as refused:
        quote(order)

    assert isinstance(refused.value, PreconditionFailedError)


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "message"),
    [
        pytest.param(AT + DAY, AT + 2 * DAY, "not valid yet", id="not-yet-started"),
        pytest.param(AT - DAY, AT, "has expired", id="ends-at-the-quote-time"),
        pytest.param(AT - 2 * DAY, AT - DAY, "has expired", id="long-expired"),
    ],
)
def test_a_coupon_outside_its_validity_window_is_refused(
    valid_from: datetime, valid_until: datetime, message: str
) -> None:
    of = fixed(300, valid_from=valid_from, valid_until=valid_until)

    with pytest.raises(CouponOutsideValidityError, match=message):
        quote(request(A, coupons=(coupon(of),)))


def test_a_coupon_is_valid_from_the_first_instant_of_its_window() -> None:
    of = fixed(300, valid_from=AT, valid_until=AT + DAY)

    assert quote(request(A, coupons=(coupon(of),))).coupon_discount == cny(300)


def test_a_coupon_of_another_buyer_is_refused() -> None:
    with pytest.raises(CouponNotOwnedError, match="another buyer"):
        quote(request(A, coupons=(coupon(fixed(300), owner_id="buyer-2"),)))


def test_a_coupon_skips_flash_sale_lines_unless_the_rules_allow_it() -> None:
    order = request(A, B, coupons=(coupon(fixed(300)),), flash_sale_prices=(flash("sku-a", 600),))

    default = quote(order)
    on_top = quote(order, StackingRules(coupon_on_flash_sale=True))

    assert [q.coupon_share.amount for q in default.lines] == [0, 300]
    assert "coupon c-1: sku-a left out: coupons do not apply on top of flash sales" in (
        default.explanation
    )
    assert [q.coupon_share.amount for q in on_top.lines] == [212, 88]


@pytest.mark.parametrize(
    ("lines", "of", "shares", "unused"),
    [
        pytest.param([A], fixed(5000), [2000], 3000, id="never-below-zero"),
        pytest.param(
            [line("sku-a", 1, 1000, min_price(800)), line("sku-b", 1, 1000)],
            fixed(1000),
            [200, 800],
            0,
            id="a-floored-line-passes-the-rest-on",
        ),
        pytest.param(
            [line("sku-a", 1, 1000, min_price(800)), line("sku-b", 1, 1000, min_price(800))],
            fixed(1000),
            [200, 200],
            600,
            id="both-floored-rest-unused",
        ),
        pytest.param(
            [line("sku-a", 3, 1000, min_price(1000))],
            percent(5000),
            [0],
            1500,
            id="floor-at-list-takes-nothing",
        ),
    ],
)
def test_a_coupon_stops_at_the_floor_and_its_unused_part_is_dropped(
    lines: list[QuoteLine], of: CouponTemplate, shares: list[int], unused: int
) -> None:
    result = quote(request(*lines, coupons=(coupon(of),)))

    assert [q.coupon_share.amount for q in result.lines] == shares
    assert result.coupons[0].unused.amount == unused
    for quoted in result.lines:
        assert quoted.total >= quoted.floor_unit_price.times(quoted.quantity)
    assert_adds_up(result)
    if unused:
        assert any(f"CNY {unused} unused" in step for step in result.explanation)


@pytest.mark.parametrize(
    "templates",
    [
        pytest.param((fixed(100), fixed(200)), id="neither-stackable"),
        pytest.param((fixed(100, stackable=True), fixed(200)), id="one-not-stackable"),
    ],
)
def test_one_coupon_per_order_unless_every_coupon_is_stackable(
    templates: tuple[CouponTemplate, ...],
) -> None:
    coupons = tuple(coupon(of, f"c-{i}") for i, of in enumerate(templates))

    with pytest.raises(CouponNotStackableError, match="one coupon per order"):
        quote(request(A, coupons=coupons))


@pytest.mark.parametrize(
    ("templates", "discounts", "shipping_discount"),
    [
        pytest.param(
            (fixed(200, stackable=True), percent(1000, stackable=True)),
            [200, 180],
            0,
            id="percent-after-fixed-on-what-is-left",
        ),
        pytest.param(
            (percent(1000, stackable=True), fixed(200, stackable=True)),
            [200, 200],
            0,
            id="fixed-after-percent",
        ),
        pytest.param(
            (free_shipping(stackable=True), fixed(300, stackable=True)),
            [0, 300],
            800,
            id="free-shipping-and-fixed",
        ),
        pytest.param(
            (free_shipping(stackable=True), free_shipping(stackable=True)),
            [0, 0],
            800,
            id="shipping-is-freed-once",
        ),
    ],
)
def test_stackable_coupons_apply_in_order_each_on_what_is_left(
    templates: tuple[CouponTemplate, ...], discounts: list[int], shipping_discount: int
) -> None:
    coupons = tuple(coupon(of, f"c-{i}") for i, of in enumerate(templates))

    result = quote(request(A, coupons=coupons, shipping_fee=cny(800)))

    assert [applied.discount.amount for applied in result.coupons] == discounts
    assert result.shipping_discount.amount == shipping_discount
    assert result.lines[0].coupon_share.amount == sum(discounts)
    assert_adds_up(result)


def test_a_full_quote_reads_as_a_breakdown_and_its_steps() -> None:
    order = request(
        line("sku-a", 2, 1000),
        line("sku-b", 1, 500),
        line("sku-c", 1, 300),
        flash_sale_prices=(flash("sku-a", 600),),
        store_discounts=(store(1000),),
        coupons=(coupon(threshold(700, 100, scope=scope(None, "sku-b", "sku-c"))),),
        shipping_fee=cny(600),
    )

    result = quote(order)

    assert [
        (q.sku_id, q.unit_price.amount, q.coupon_share.amount, q.total.amount) for q in result.lines
    ] == [
        ("sku-a", 600, 0, 1200),
        ("sku-b", 450, 63, 387),
        ("sku-c", 270, 37, 233),
    ]
    assert (result.subtotal, result.promotion_discount, result.coupon_discount) == (
        cny(2800),
        cny(880),
        cny(100),
    )
    assert result.total == cny(2420)
    assert result.explanation[-1] == (
        "total CNY 2420 = subtotal CNY 2800 - promotions CNY 880 - coupons CNY 100"
        " + shipping CNY 600 - shipping discount CNY 0"
    )
    assert "coupon c-1: threshold CNY 700 met by CNY 720" in result.explanation
    assert "coupon c-1: split by line amount: sku-b CNY 63, sku-c CNY 37" in result.explanation
