"""Random orders, promotions, floors, coupons and rules: whatever the quote decides, the
coupon shares add up to the coupon discount, no line ends below its floor, and the totals
add up (fen)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.promotion.domain.quote import (
    DEFAULT_LADDER,
    CouponOutOfScopeError,
    CouponTemplate,
    CouponThresholdNotMetError,
    PriceFloor,
    QuoteRequest,
    StackingRules,
    quote,
)
from services.promotion.tests.unit.quote_helpers import (
    cny,
    coupon,
    fixed,
    flash,
    free_shipping,
    group,
    line,
    min_percent,
    min_price,
    percent,
    request,
    room_special,
    scope,
    store,
    threshold,
)


@st.composite
def floors(draw: st.DrawFn, list_price: int) -> PriceFloor:
    kind = draw(st.sampled_from(["none", "price", "percent"]))
    if kind == "price":
        return min_price(draw(st.integers(0, list_price)))
    if kind == "percent":
        return min_percent(draw(st.integers(0, 10_000)))
    return PriceFloor()


@st.composite
def templates(draw: st.DrawFn, sku_ids: list[str], stackable: bool) -> CouponTemplate:
    covered = draw(st.lists(st.sampled_from(sku_ids), unique=True, max_size=len(sku_ids)))
    fields = {"scope": scope(None, *covered), "stackable": stackable}
    kind = draw(st.sampled_from(["fixed", "percent", "threshold", "free_shipping"]))
    if kind == "fixed":
        return fixed(draw(st.integers(1, 200_000)), **fields)
    if kind == "percent":
        cap = draw(st.one_of(st.none(), st.integers(1, 50_000)))
        return percent(draw(st.integers(1, 10_000)), cap, **fields)
    if kind == "threshold":
        spend = draw(st.integers(1, 50_000))
        return threshold(spend, draw(st.integers(1, spend)), **fields)
    over = draw(st.one_of(st.none(), st.integers(1, 50_000)))
    return free_shipping(threshold=cny(over) if over else None, **fields)


@st.composite
def orders(draw: st.DrawFn) -> tuple[QuoteRequest, StackingRules]:
    count = draw(st.integers(1, 6))
    sku_ids = [f"sku-{i}" for i in range(count)]
    lines, flashes, groups, specials = [], [], [], []
    for sku_id in sku_ids:
        price = draw(st.integers(0, 100_000))
        lines.append(line(sku_id, draw(st.integers(1, 5)), price, draw(floors(price))))
        offer = st.integers(0, price + 10)
        if draw(st.booleans()):
            flashes.append(flash(sku_id, draw(offer), f"fs-{sku_id}"))
        if draw(st.booleans()):
            groups.append(group(sku_id, draw(offer), f"gb-{sku_id}"))
        if draw(st.booleans()):
            specials.append(room_special(sku_id, draw(offer), f"rs-{sku_id}"))
    discounts = draw(st.lists(st.integers(1, 10_000), max_size=2))
    coupon_count = draw(st.integers(0, 3))
    coupons = tuple(
        coupon(draw(templates(sku_ids, stackable=coupon_count > 1)), f"c-{i}")
        for i in range(coupon_count)
    )
    order = request(
        *lines,
        group_id=draw(st.sampled_from([None, "g-1"])),
        flash_sale_prices=tuple(flashes),
        group_prices=tuple(groups),
        room_special_prices=tuple(specials),
        store_discounts=tuple(store(bp, promotion_id=f"sd-{bp}") for bp in discounts),
        coupons=coupons,
        shipping_fee=cny(draw(st.integers(0, 2_000))),
    )
    ladder = draw(st.permutations(DEFAULT_LADDER))[: draw(st.integers(0, len(DEFAULT_LADDER)))]
    return order, StackingRules(tuple(ladder), coupon_on_flash_sale=draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(orders())
def test_every_quote_splits_coupons_exactly_respects_floors_and_adds_up(
    case: tuple[QuoteRequest, StackingRules],
) -> None:
    order, rules = case
    try:
        result = quote(order, rules)
    except (CouponThresholdNotMetError, CouponOutOfScopeError):
        return

    for applied in result.coupons:
        assert sum(share.amount for share in applied.shares) == applied.discount.amount
    assert result.coupon_discount.amount == sum(q.coupon_share.amount for q in result.lines)
    for quoted in result.lines:
        assert quoted.floor_unit_price <= quoted.unit_price <= quoted.list_unit_price
        assert quoted.total >= quoted.floor_unit_price.times(quoted.quantity)
        assert quoted.total == (quoted.list_total - quoted.promotion_discount - quoted.coupon_share)
    assert result.shipping_discount <= result.shipping_fee
    assert result.total == (
        result.subtotal
        - result.promotion_discount
        - result.coupon_discount
        + result.shipping_fee
        - result.shipping_discount
    )
    assert result.total.amount == (
        sum(q.total.amount for q in result.lines)
        + result.shipping_fee.amount
        - result.shipping_discount.amount
    )
    assert quote(order, rules) == result
