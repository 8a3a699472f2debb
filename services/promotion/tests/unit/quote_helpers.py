"""Builders for quote tests: every amount is CNY minor units (fen), every time is around
``AT``, and a request is merchant ``m-1``'s order by ``buyer-1`` from ``room-1``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.promotion.domain.money import Money
from services.promotion.domain.quote import (
    Coupon,
    CouponKind,
    CouponScope,
    CouponTemplate,
    FlashSalePrice,
    GroupPrice,
    PriceFloor,
    Quote,
    QuoteLine,
    QuoteRequest,
    RoomSpecialPrice,
    StoreDiscount,
)

CURRENCY = "CNY"
MERCHANT = "m-1"
BUYER = "buyer-1"
ROOM = "room-1"
AT = datetime(2025, 6, 1, 20, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def cny(amount: int) -> Money:
    return Money(amount, CURRENCY)


def line(sku_id: str, quantity: int, list_price: int, floor: PriceFloor | None = None) -> QuoteLine:
    return QuoteLine(sku_id, quantity, cny(list_price), floor or PriceFloor())


def min_price(amount: int) -> PriceFloor:
    return PriceFloor(min_unit_price=cny(amount))


def min_percent(basis_points: int) -> PriceFloor:
    return PriceFloor(min_percent_of_list_bps=basis_points)


def flash(sku_id: str, price: int, promotion_id: str = "fs-1") -> FlashSalePrice:
    return FlashSalePrice(promotion_id, sku_id, cny(price))


def group(sku_id: str, price: int, promotion_id: str = "gb-1") -> GroupPrice:
    return GroupPrice(promotion_id, sku_id, cny(price))


def room_special(
    sku_id: str, price: int, promotion_id: str = "rs-1", room_id: str = ROOM
) -> RoomSpecialPrice:
    return RoomSpecialPrice(promotion_id, room_id, sku_id, cny(price))


def store(basis_points: int, *sku_ids: str, promotion_id: str = "sd-1") -> StoreDiscount:
    return StoreDiscount(promotion_id, basis_points, frozenset(sku_ids))


def scope(room_id: str | None = None, *sku_ids: str, merchant_id: str = MERCHANT) -> CouponScope:
    return CouponScope(merchant_id, room_id, frozenset(sku_ids))


def template(kind: CouponKind, **fields: Any) -> CouponTemplate:
    defaults: dict[str, Any] = {
        "template_id": f"t-{kind}",
        "kind": kind,
        "scope": scope(),
        "valid_from": AT - DAY,
        "valid_until": AT + DAY,
    }
    return CouponTemplate(**(defaults | fields))


def fixed(amount: int, **fields: Any) -> CouponTemplate:
    return template(CouponKind.FIXED_AMOUNT, amount=cny(amount), **fields)


def percent(basis_points: int, cap: int | None = None, **fields: Any) -> CouponTemplate:
    capped = cny(cap) if cap is not None else None
    return template(CouponKind.PERCENT, percent_bps=basis_points, cap=capped, **fields)


def threshold(spend: int, save: int, **fields: Any) -> CouponTemplate:
    return template(CouponKind.THRESHOLD, threshold=cny(spend), amount=cny(save), **fields)


def free_shipping(**fields: Any) -> CouponTemplate:
    return template(CouponKind.FREE_SHIPPING, **fields)


def coupon(of: CouponTemplate, coupon_id: str = "c-1", owner_id: str = BUYER) -> Coupon:
    return Coupon(coupon_id, owner_id, of)


def request(*lines: QuoteLine, **fields: Any) -> QuoteRequest:
    defaults: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "buyer_id": BUYER,
        "currency": CURRENCY,
        "at": AT,
        "lines": lines,
        "room_id": ROOM,
        "channel": "mini-program",
    }
    return QuoteRequest(**(defaults | fields))


@dataclass(frozen=True)
class Row:
    """One quote line as plain numbers, for tables."""

    sku_id: str
    unit_price: int
    promotion: str | None
    promotion_discount: int
    coupon_share: int
    total: int


def rows(result: Quote) -> list[Row]:
    return [
        Row(
            line.sku_id,
            line.unit_price.amount,
            line.promotion.promotion_id if line.promotion else None,
            line.promotion_discount.amount,
            line.coupon_share.amount,
            line.total.amount,
        )
        for line in result.lines
    ]
