"""The merchant's price list and its price promotions: room special prices and store discounts.

This system has no catalog service: promotion owns each SKU's list price. A room special
price (直播间专享价) is one SKU's price in one room (or in any room) and may be time-boxed;
a store discount takes a percentage off the list price of some SKUs (or of all). A price
promotion is live at ``at`` when it is not removed and ``starts_at <= at < ends_at`` (an
open end is no bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from services.kit.tenancy import validate_id, validate_merchant_id
from services.promotion.domain.money import BASIS_POINTS, Money
from services.promotion.domain.quote import RoomSpecialPrice, StoreDiscount

MAX_DISCOUNT_SKUS = 200


class InvalidWindowError(InvalidArgumentError):
    pass


class InvalidPriceError(InvalidArgumentError):
    pass


class PriceNotFoundError(NotFoundError):
    pass


class PromotionKindTakenError(AlreadyExistsError):
    """A promotion id is already used by a promotion of another kind."""


def validate_window(starts_at: datetime | None, ends_at: datetime | None, what: str) -> None:
    for moment in (starts_at, ends_at):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise InvalidWindowError(f"the times of {what} must carry a time zone")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidWindowError(f"{what} must end after it starts")


def within(at: datetime, starts_at: datetime | None, ends_at: datetime | None) -> bool:
    """``starts_at <= at < ends_at``, an absent bound being no bound."""
    return (starts_at is None or starts_at <= at) and (ends_at is None or at < ends_at)


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListPriceSet:
    sku_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class RoomSpecialPriceSet:
    promotion_id: str
    sku_id: str
    room_id: str
    """Empty: any room."""
    amount_minor: int
    currency: str
    starts_at: datetime | None
    ends_at: datetime | None


@dataclass(frozen=True)
class StoreDiscountSet:
    promotion_id: str
    percent_bps: int
    sku_ids: tuple[str, ...]
    """Empty: every SKU of the store."""
    starts_at: datetime | None
    ends_at: datetime | None


@dataclass(frozen=True)
class PricePromotionRemoved:
    promotion_id: str


PriceEvent = ListPriceSet | RoomSpecialPriceSet | StoreDiscountSet | PricePromotionRemoved


# -- commands ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetListPrice:
    merchant_id: str
    sku_id: str
    price: Money

    def event(self) -> ListPriceSet:
        validate_merchant_id(self.merchant_id)
        validate_id(self.sku_id, "SKU id")
        if self.price.amount <= 0:
            raise InvalidPriceError(f"the list price of {self.sku_id} must be above zero")
        return ListPriceSet(self.sku_id, self.price.amount, self.price.currency)


@dataclass(frozen=True)
class SetRoomSpecialPrice:
    merchant_id: str
    promotion_id: str
    sku_id: str
    room_id: str | None
    price: Money
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def event(self) -> RoomSpecialPriceSet:
        validate_merchant_id(self.merchant_id)
        validate_id(self.promotion_id, "promotion id")
        validate_id(self.sku_id, "SKU id")
        if self.room_id is not None:
            validate_id(self.room_id, "room id")
        validate_window(self.starts_at, self.ends_at, f"special price {self.promotion_id}")
        return RoomSpecialPriceSet(
            promotion_id=self.promotion_id,
            sku_id=self.sku_id,
            room_id=self.room_id or "",
            amount_minor=self.price.amount,
            currency=self.price.currency,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
        )


@dataclass(frozen=True)
class SetStoreDiscount:
    merchant_id: str
    promotion_id: str
    percent_bps: int
    sku_ids: tuple[str, ...] = ()
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def event(self) -> StoreDiscountSet:
        validate_merchant_id(self.merchant_id)
        validate_id(self.promotion_id, "promotion id")
        if not 1 <= self.percent_bps <= BASIS_POINTS:
            raise InvalidPriceError(f"a store discount is 1 to {BASIS_POINTS} bp")
        if len(self.sku_ids) > MAX_DISCOUNT_SKUS:
            raise InvalidPriceError(f"a store discount names at most {MAX_DISCOUNT_SKUS} SKUs")
        for sku_id in self.sku_ids:
            validate_id(sku_id, "SKU id")
        validate_window(self.starts_at, self.ends_at, f"store discount {self.promotion_id}")
        return StoreDiscountSet(
            promotion_id=self.promotion_id,
            percent_bps=self.percent_bps,
            sku_ids=tuple(sorted(set(self.sku_ids))),
            starts_at=self.starts_at,
            ends_at=self.ends_at,
        )


# -- state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricePromotion:
    """A room special price or a store discount as recorded (the last event of its stream)."""

    merchant_id: str
    promotion_id: str
    offer: RoomSpecialPriceSet | StoreDiscountSet
    removed: bool
    version: int

    @property
    def kind(self) -> str:
        return "room_special" if isinstance(self.offer, RoomSpecialPriceSet) else "store_discount"

    def live_at(self, at: datetime) -> bool:
        return not self.removed and within(at, self.offer.starts_at, self.offer.ends_at)

    def check_replaceable_by(self, event: RoomSpecialPriceSet | StoreDiscountSet) -> None:
        if type(event) is not type(self.offer):
            raise PromotionKindTakenError(
                f"promotion {self.promotion_id} is a {self.kind.replace('_', ' ')}"
            )

    def room_special(self, room_id: str) -> RoomSpecialPrice | None:
        """The quote's view of a special price for an order from ``room_id``."""
        offer = self.offer
        if not isinstance(offer, RoomSpecialPriceSet):
            return None
        if offer.room_id and offer.room_id != room_id:
            return None
        return RoomSpecialPrice(
            promotion_id=self.promotion_id,
            room_id=room_id,
            sku_id=offer.sku_id,
            unit_price=Money(offer.amount_minor, offer.currency),
        )

    def store_discount(self) -> StoreDiscount | None:
        offer = self.offer
        if not isinstance(offer, StoreDiscountSet):
            return None
        return StoreDiscount(
            promotion_id=self.promotion_id,
            percent_bps=offer.percent_bps,
            sku_ids=frozenset(offer.sku_ids),
        )
