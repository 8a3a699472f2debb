"""Price promotions: one per line by the ladder, and the floor under every unit price.

Each case: the order's lines and the promotions found for them -> each line's unit price,
the promotion applied, its discount and the line total (fen)."""

from __future__ import annotations

from typing import Any

import pytest

from services.promotion.domain.quote import PromotionKind, QuoteLine, StackingRules, quote
from services.promotion.tests.unit.quote_helpers import (
    Row,
    flash,
    group,
    line,
    min_percent,
    min_price,
    request,
    room_special,
    rows,
    store,
)

A = line("sku-a", 2, 1000)


@pytest.mark.parametrize(
    ("lines", "promotions", "expected"),
    [
        pytest.param([A], {}, [Row("sku-a", 1000, None, 0, 0, 2000)], id="no-promotion"),
        pytest.param(
            [A],
            {"flash_sale_prices": (flash("sku-a", 600),)},
            [Row("sku-a", 600, "fs-1", 800, 0, 1200)],
            id="flash-sale-alone",
        ),
        pytest.param(
            [A],
            {"group_id": "g-9", "group_prices": (group("sku-a", 700),)},
            [Row("sku-a", 700, "gb-1", 600, 0, 1400)],
            id="group-price-alone",
        ),
        pytest.param(
            [A],
            {"room_special_prices": (room_special("sku-a", 800),)},
            [Row("sku-a", 800, "rs-1", 400, 0, 1600)],
            id="room-special-alone",
        ),
        pytest.param(
            [line("sku-a", 3, 999)],
            {"store_discounts": (store(1500),)},
            [Row("sku-a", 850, "sd-1", 447, 0, 2550)],
            id="store-discount-rounds-each-unit-down",
        ),
        pytest.param(
            [A, line("sku-b", 1, 500)],
            {"store_discounts": (store(1000, "sku-b"),)},
            [Row("sku-a", 1000, None, 0, 0, 2000), Row("sku-b", 450, "sd-1", 50, 0, 450)],
            id="store-discount-scoped-to-skus",
        ),
        pytest.param(
            [A, line("sku-b", 1, 500)],
            {"flash_sale_prices": (flash("sku-b", 100),)},
            [Row("sku-a", 1000, None, 0, 0, 2000), Row("sku-b", 100, "fs-1", 400, 0, 100)],
            id="promotion-only-on-its-own-sku",
        ),
    ],
)
def test_each_price_promotion_alone_sets_the_unit_price(
    lines: list[QuoteLine], promotions: dict[str, Any], expected: list[Row]
) -> None:
    assert rows(quote(request(*lines, **promotions))) == expected


EVERY_KIND: dict[str, Any] = {
    "group_id": "g-9",
    "flash_sale_prices": (flash("sku-a", 900),),
    "group_prices": (group("sku-a", 500),),
    "room_special_prices": (room_special("sku-a", 400),),
    "store_discounts": (store(9000),),
}


@pytest.mark.parametrize(
    ("promotions", "rules", "winner"),
    [
        pytest.param(EVERY_KIND, StackingRules(), "fs-1", id="flash-sale-outranks-all-even-dearer"),
        pytest.param(
            EVERY_KIND | {"flash_sale_prices": ()}, StackingRules(), "gb-1", id="group-over-room"
        ),
        pytest.param(
            EVERY_KIND | {"flash_sale_prices": (), "group_prices": ()},
            StackingRules(),
            "rs-1",
            id="room-special-over-store",
        ),
        pytest.param(
            EVERY_KIND | {"group_id": None},
            StackingRules(ladder=(PromotionKind.GROUP_BUY, PromotionKind.ROOM_SPECIAL)),
            "rs-1",
            id="group-price-needs-a-group-id",
        ),
        pytest.param(
            {"room_special_prices": (room_special("sku-a", 400, room_id="room-2"),)}
            | {"store_discounts": (store(1000),)},
            StackingRules(),
            "sd-1",
            id="room-special-of-another-room-is-ignored",
        ),
        pytest.param(
            EVERY_KIND,
            StackingRules(ladder=(PromotionKind.STORE_DISCOUNT, PromotionKind.FLASH_SALE)),
            "sd-1",
            id="configured-ladder-puts-store-first",
        ),
        pytest.param(
            EVERY_KIND,
            StackingRules(ladder=(PromotionKind.ROOM_SPECIAL,)),
            "rs-1",
            id="kinds-left-off-the-ladder-never-apply",
        ),
        pytest.param(
            EVERY_KIND | {"flash_sale_prices": (flash("sku-a", 1000), flash("sku-a", 1200))},
            StackingRules(),
            "gb-1",
            id="flash-price-not-below-list-is-skipped",
        ),
        pytest.param(
            {"flash_sale_prices": (flash("sku-a", 700, "fs-2"), flash("sku-a", 600, "fs-3"))},
            StackingRules(),
            "fs-3",
            id="lowest-offer-within-a-rung",
        ),
        pytest.param(
            {"flash_sale_prices": (flash("sku-a", 600, "fs-2"), flash("sku-a", 600, "fs-1"))},
            StackingRules(),
            "fs-1",
            id="equal-offers-go-to-the-smaller-id",
        ),
        pytest.param(EVERY_KIND, StackingRules(ladder=()), None, id="empty-ladder-no-promotion"),
    ],
)
def test_the_ladder_picks_exactly_one_promotion_per_line(
    promotions: dict[str, Any], rules: StackingRules, winner: str | None
) -> None:
    result = quote(request(A, **promotions), rules)

    (quoted,) = result.lines
    assert (quoted.promotion.promotion_id if quoted.promotion else None) == winner


def test_the_applied_promotion_says_why_it_won_and_what_it_outranked() -> None:
    result = quote(request(A, **EVERY_KIND))

    promotion = result.lines[0].promotion
    assert promotion is not None
    assert promotion.kind is PromotionKind.FLASH_SALE
    assert "flash sale > group price > room special price > store discount" in promotion.reason
    assert "outranks group price gb-1 (CNY 500)" in promotion.reason
    assert any(promotion.reason in step for step in result.explanation)


def test_an_ignored_promotion_is_explained() -> None:
    result = quote(request(A, group_prices=(group("sku-a", 500),)))

    assert "sku-a: group price gb-1 ignored: the order is not part of a group" in (
        result.explanation
    )


@pytest.mark.parametrize(
    ("floored_line", "promotions", "unit_price", "offer"),
    [
        pytest.param(
            line("sku-a", 2, 1000, min_price(650)),
            {"flash_sale_prices": (flash("sku-a", 600),)},
            650,
            600,
            id="minimum-unit-price-clamps-a-flash-sale",
        ),
        pytest.param(
            line("sku-a", 1, 999, min_percent(5000)),
            {"store_discounts": (store(8000),)},
            500,
            200,
            id="percent-of-list-floor-rounds-up",
        ),
        pytest.param(
            line("sku-a", 1, 1000, min_price(300)),
            {"room_special_prices": (room_special("sku-a", 400),)},
            400,
            400,
            id="offer-above-the-floor-is-untouched",
        ),
        pytest.param(
            line("sku-a", 1, 1000, min_price(0)),
            {"flash_sale_prices": (flash("sku-a", 0),)},
            0,
            0,
            id="a-zero-floor-allows-a-free-flash-sale",
        ),
    ],
)
def test_no_unit_price_goes_below_its_floor(
    floored_line: QuoteLine, promotions: dict[str, Any], unit_price: int, offer: int
) -> None:
    result = quote(request(floored_line, **promotions))

    (quoted,) = result.lines
    assert quoted.unit_price.amount == unit_price
    assert quoted.promotion is not None
    assert quoted.promotion.offer_unit_price.amount == offer
    assert quoted.total.amount == unit_price * floored_line.quantity


def test_a_clamped_price_is_explained() -> None:
    result = quote(
        request(line("sku-a", 1, 1000, min_price(650)), flash_sale_prices=(flash("sku-a", 600),))
    )

    assert "sku-a: CNY 600 is below the floor CNY 650; clamped to the floor" in (result.explanation)


def test_the_same_request_always_gives_the_same_quote() -> None:
    order = request(A, line("sku-b", 3, 333), **EVERY_KIND)

    assert quote(order) == quote(order)
