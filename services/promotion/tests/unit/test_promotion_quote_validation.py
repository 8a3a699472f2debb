"""Bad input to a quote: every case is refused with its own error, never priced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from services.kit.errors import InvalidArgumentError, KitError
from services.kit.tenancy import InvalidIdError, InvalidMerchantIdError
from services.promotion.domain.money import (
    CurrencyMismatchError,
    InvalidAmountError,
    InvalidCurrencyError,
    Money,
    NegativeAmountError,
)
from services.promotion.domain.quote import (
    MAX_COUPONS,
    MAX_LINES,
    MAX_QUANTITY,
    CouponKind,
    DuplicateCouponError,
    DuplicateLineError,
    InvalidCouponTemplateError,
    InvalidPercentError,
    InvalidPriceFloorError,
    InvalidQuantityError,
    InvalidStackingRulesError,
    NaiveTimeError,
    NoLinesError,
    PriceFloor,
    PromotionKind,
    QuoteLine,
    StackingRules,
    TooManyCouponsError,
    TooManyLinesError,
    quote,
)
from services.promotion.tests.unit.quote_helpers import (
    AT,
    DAY,
    cny,
    coupon,
    fixed,
    flash,
    line,
    min_percent,
    min_price,
    percent,
    request,
    store,
    template,
    threshold,
)

A = line("sku-a", 1, 1000)

BAD_INPUT: list[Any] = [
    # amounts and quantities
    pytest.param(lambda: line("sku-a", 1, -1), NegativeAmountError, id="negative-list-price"),
    pytest.param(
        lambda: QuoteLine("sku-a", 1, Money(9.99, "CNY")),  # type: ignore[arg-type]
        InvalidAmountError,
        id="float-price",
    ),
    pytest.param(lambda: flash("sku-a", -5), NegativeAmountError, id="negative-flash-price"),
    pytest.param(lambda: line("sku-a", 0, 100), InvalidQuantityError, id="zero-quantity"),
    pytest.param(lambda: line("sku-a", -2, 100), InvalidQuantityError, id="negative-quantity"),
    pytest.param(
        lambda: line("sku-a", MAX_QUANTITY + 1, 100), InvalidQuantityError, id="huge-quantity"
    ),
    pytest.param(
        lambda: request(A, shipping_fee=cny(-1)), NegativeAmountError, id="negative-shipping"
    ),
    # percentages
    pytest.param(lambda: store(10_001), InvalidPercentError, id="store-discount-over-100pct"),
    pytest.param(lambda: store(0), InvalidPercentError, id="store-discount-of-nothing"),
    pytest.param(lambda: percent(10_001), InvalidPercentError, id="percent-coupon-over-100pct"),
    pytest.param(lambda: percent(-100), InvalidPercentError, id="negative-percent-coupon"),
    pytest.param(lambda: min_percent(10_001), InvalidPercentError, id="floor-over-100pct"),
    # floors
    pytest.param(
        lambda: line("sku-a", 1, 100, min_price(101)),
        InvalidPriceFloorError,
        id="floor-above-list",
    ),
    pytest.param(
        lambda: line("sku-a", 1, 100, PriceFloor(Money(1, "USD"))),
        CurrencyMismatchError,
        id="floor-in-another-currency",
    ),
    # the request
    pytest.param(lambda: request(), NoLinesError, id="zero-lines"),
    pytest.param(
        lambda: request(*(line(f"sku-{i}", 1, 1) for i in range(MAX_LINES + 1))),
        TooManyLinesError,
        id="too-many-lines",
    ),
    pytest.param(
        lambda: request(A, line("sku-a", 2, 1000)), DuplicateLineError, id="duplicate-sku"
    ),
    pytest.param(
        lambda: request(QuoteLine("sku-a", 1, Money(100, "USD"))),
        CurrencyMismatchError,
        id="line-in-another-currency",
    ),
    pytest.param(lambda: request(A, currency="RMB1"), InvalidCurrencyError, id="bad-currency"),
    pytest.param(
        lambda: request(A, at=datetime(2025, 6, 1)), NaiveTimeError, id="time-without-zone"
    ),
    pytest.param(lambda: request(A, buyer_id=""), InvalidIdError, id="empty-buyer"),
    pytest.param(lambda: line("sku a", 1, 1), InvalidIdError, id="sku-with-space"),
    pytest.param(lambda: request(A, merchant_id="m:1"), InvalidMerchantIdError, id="bad-merchant"),
    pytest.param(
        lambda: request(A, coupons=(coupon(fixed(1)), coupon(fixed(2)))),
        DuplicateCouponError,
        id="same-coupon-twice",
    ),
    pytest.param(
        lambda: request(
            A, coupons=tuple(coupon(fixed(1), f"c-{i}") for i in range(MAX_COUPONS + 1))
        ),
        TooManyCouponsError,
        id="too-many-coupons",
    ),
    # coupon templates
    pytest.param(
        lambda: template(CouponKind.FIXED_AMOUNT), InvalidCouponTemplateError, id="fixed-no-amount"
    ),
    pytest.param(lambda: fixed(0), InvalidCouponTemplateError, id="fixed-of-zero"),
    pytest.param(
        lambda: fixed(100, cap=cny(50)), InvalidCouponTemplateError, id="cap-on-a-fixed-coupon"
    ),
    pytest.param(lambda: percent(1000, cap=0), InvalidCouponTemplateError, id="zero-cap"),
    pytest.param(
        lambda: template(CouponKind.PERCENT), InvalidCouponTemplateError, id="percent-no-rate"
    ),
    pytest.param(
        lambda: template(CouponKind.THRESHOLD, amount=cny(100)),
        InvalidCouponTemplateError,
        id="threshold-without-threshold",
    ),
    pytest.param(
        lambda: threshold(100, 150), InvalidCouponTemplateError, id="saves-more-than-spent"
    ),
    pytest.param(
        lambda: template(CouponKind.FREE_SHIPPING, amount=cny(100)),
        InvalidCouponTemplateError,
        id="free-shipping-with-amount",
    ),
    pytest.param(
        lambda: fixed(100, valid_from=AT, valid_until=AT),
        InvalidCouponTemplateError,
        id="empty-window",
    ),
    pytest.param(
        lambda: fixed(100, valid_from=datetime(2025, 6, 1), valid_until=AT + DAY),
        NaiveTimeError,
        id="window-without-zone",
    ),
    pytest.param(
        lambda: percent(1000, cap=500, threshold=Money(1, "USD")),
        CurrencyMismatchError,
        id="template-mixes-currencies",
    ),
    pytest.param(
        lambda: request(
            A, coupons=(coupon(template(CouponKind.FIXED_AMOUNT, amount=Money(100, "USD"))),)
        ),
        CurrencyMismatchError,
        id="coupon-in-another-currency",
    ),
    # rules
    pytest.param(
        lambda: StackingRules(ladder=(PromotionKind.FLASH_SALE, PromotionKind.FLASH_SALE)),
        InvalidStackingRulesError,
        id="kind-twice-on-the-ladder",
    ),
    pytest.param(
        lambda: StackingRules(ladder=("flash",)),  # type: ignore[arg-type]
        InvalidStackingRulesError,
        id="unknown-kind-on-the-ladder",
    ),
]


@pytest.mark.parametrize(("build", "error"), BAD_INPUT)
def test_bad_input_is_refused_with_its_own_error(
    build: Callable[[], object], error: type[KitError]
) -> None:
    with pytest.raises(error) as refused:
        build()

    assert isinstance(refused.value, InvalidArgumentError)
    assert refused.value.grpc_code == "INVALID_ARGUMENT"
    assert refused.value.detail


def test_bad_input_never_reaches_the_quote() -> None:
    with pytest.raises(NoLinesError, match="at least one line"):
        quote(request())
