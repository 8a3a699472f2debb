"""An order to price from what promotion knows (PriceOrder), before anything is looked up:
its shape is checked first, so a malformed request touches no store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.errors import PreconditionFailedError
from services.kit.tenancy import validate_id, validate_merchant_id
from services.promotion.domain.quote import (
    MAX_COUPONS,
    MAX_LINES,
    MAX_QUANTITY,
    DuplicateCouponError,
    DuplicateLineError,
    InvalidQuantityError,
    NaiveTimeError,
    NoLinesError,
    TooManyCouponsError,
    TooManyLinesError,
)


class NotOnSaleError(PreconditionFailedError):
    """Every unit sold in a room is held through an inventory sale: a SKU with no live
    campaign in the room cannot be ordered there."""


@dataclass(frozen=True)
class OrderLine:
    sku_id: str
    quantity: int


@dataclass(frozen=True)
class PriceOrder:
    merchant_id: str
    buyer_id: str
    lines: tuple[OrderLine, ...]
    room_id: str | None = None
    channel: str = ""
    group_id: str | None = None
    coupon_ids: tuple[str, ...] = ()
    order_id: str | None = None
    """None: price only, lock nothing."""
    lock_until: datetime | None = None
    """None: the service's default lock time."""

    def validated(self) -> PriceOrder:
        validate_merchant_id(self.merchant_id)
        validate_id(self.buyer_id, "buyer id")
        for optional, what in (
            (self.room_id, "room id"),
            (self.group_id, "group id"),
            (self.order_id, "order id"),
        ):
            if optional is not None:
                validate_id(optional, what)
        if not self.lines:
            raise NoLinesError("an order needs at least one line")
        if len(self.lines) > MAX_LINES:
            raise TooManyLinesError(f"an order has at most {MAX_LINES} lines")
        skus = [line.sku_id for line in self.lines]
        for line in self.lines:
            validate_id(line.sku_id, "SKU id")
            if not 1 <= line.quantity <= MAX_QUANTITY:
                raise InvalidQuantityError(
                    f"quantity of {line.sku_id} must be 1 to {MAX_QUANTITY}, got {line.quantity}"
                )
        if len(set(skus)) != len(skus):
            raise DuplicateLineError("a SKU appears on two lines")
        if len(self.coupon_ids) > MAX_COUPONS:
            raise TooManyCouponsError(f"an order takes at most {MAX_COUPONS} coupons")
        for coupon_id in self.coupon_ids:
            validate_id(coupon_id, "coupon id")
        if len(set(self.coupon_ids)) != len(self.coupon_ids):
            raise DuplicateCouponError("the same coupon is given twice")
        if self.lock_until is not None and self.lock_until.tzinfo is None:
            raise NaiveTimeError("lock_until must carry a time zone")
        return self

    def not_on_sale(self, sku_id: str) -> NotOnSaleError:
        if self.room_id is None:
            return NotOnSaleError(f"SKU {sku_id} is not on sale: the order names no room")
        return NotOnSaleError(f"SKU {sku_id} is not on sale in room {self.room_id}")
