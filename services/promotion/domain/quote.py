"""The price quote: what each line of an order costs, and why.

Given one merchant's order lines, the buyer, the room, an optional group, the price
promotions found for them and the coupons the buyer brings, ``quote`` returns the breakdown
per line and for the order, with the steps that led to it. Deterministic: the same request
and rules give the same quote, to the minor unit and to the word. Pure: the caller looks up
the promotions live at ``at`` and passes them in; nothing here reads a clock or a store.

The rules, in the order they run:

1. One price promotion per line, by the priority ladder (default: flash sale > group price >
   room special price > store discount). The highest rung holding an offer for the line's
   SKU that is below its list price wins; within a rung the lowest price wins, ties to the
   smaller promotion id. An offer not below the list price is no discount and is skipped; a
   kind left out of the ladder never applies. The group price ranks under the flash sale
   because the flash-sale price is the one the buyer's stock hold was granted at; it ranks
   above the room special price and the store discount because the buyer committed to it by
   opening or joining a group, whose other members pay it too. Group prices count only when
   the order names a group; a room special price counts only in its own room.
2. No unit price goes below the line's floor: the greater of its minimum unit price and its
   percentage of the list price (rounded up). An offer below the floor is clamped to it.
3. Coupons: one per order, several only when every one is stackable. Each must be the
   buyer's, valid at ``at`` (``valid_from <= at < valid_until``), of this merchant, of this
   room when room-scoped, and cover at least one of the order's SKUs. Its eligible lines are
   the covered lines, less those at a flash-sale price unless the rules allow coupons on top
   of flash sales; none eligible is an error. A threshold ("spend X") is met by the eligible
   lines' amount after price promotions, before any coupon. A fixed or threshold coupon
   takes its amount off; a percent coupon its rate of the eligible amount (rounded down),
   then its cap; a free-shipping coupon takes nothing off the lines and the shipping fee off
   the shipping. Stacked coupons apply in the order given, each on what the earlier left.
4. A coupon never takes a line below its floor: the discount is limited to what the
   eligible lines hold above their floors and the rest of it goes unused (it does not move
   to other lines or to shipping). The discount is split across the eligible lines in
   proportion to their amounts by largest remainder, ties to the earlier line, no share past
   its line's floor, so the shares add up exactly to the discount.
5. Totals: subtotal - promotion discount - coupon discount + shipping fee - shipping
   discount = total, and the line totals plus the shipping payable make the total.

Not decided here: a coupon's total quota and per-user limit are enforced when it is claimed
and locked, not when an order is priced. Two lines of the same SKU are refused rather than
merged, so that every request line has exactly one quote line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.kit.errors import InvalidArgumentError, PreconditionFailedError
from services.kit.tenancy import validate_id, validate_merchant_id
from services.promotion.domain.money import (
    BASIS_POINTS,
    CurrencyMismatchError,
    Money,
    allocate_capped,
    total,
    validate_currency,
)

MAX_LINES = 200
MAX_QUANTITY = 10_000
MAX_COUPONS = 5


# -- errors ------------------------------------------------------------------------------


class InvalidQuantityError(InvalidArgumentError):
    pass


class NoLinesError(InvalidArgumentError):
    pass


class TooManyLinesError(InvalidArgumentError):
    pass


class DuplicateLineError(InvalidArgumentError):
    """Two lines of one SKU: refused, not merged, so request and quote lines match 1:1."""


class InvalidPercentError(InvalidArgumentError):
    """A rate outside its range (a discount above 100 %, a zero discount)."""


class InvalidPriceFloorError(InvalidArgumentError):
    pass


class InvalidCouponTemplateError(InvalidArgumentError):
    pass


class TooManyCouponsError(InvalidArgumentError):
    pass


class DuplicateCouponError(InvalidArgumentError):
    pass


class InvalidStackingRulesError(InvalidArgumentError):
    pass


class NaiveTimeError(InvalidArgumentError):
    pass


class CouponNotApplicableError(PreconditionFailedError):
    """The coupon is well formed but cannot be used on this order."""


class CouponNotOwnedError(CouponNotApplicableError):
    pass


class CouponOutsideValidityError(CouponNotApplicableError):
    pass


class CouponOutOfScopeError(CouponNotApplicableError):
    pass


class CouponThresholdNotMetError(CouponNotApplicableError):
    pass


class CouponNotStackableError(CouponNotApplicableError):
    pass


# -- validation helpers ------------------------------------------------------------------


def _validate_rate(basis_points: int, what: str, lowest: int) -> int:
    if isinstance(basis_points, bool) or not isinstance(basis_points, int):
        raise InvalidPercentError(f"{what} is whole basis points, not {basis_points!r}")
    if not lowest <= basis_points <= BASIS_POINTS:
        raise InvalidPercentError(
            f"{what} must be {lowest} to {BASIS_POINTS} bp (100 %), got {basis_points}"
        )
    return basis_points


def _validate_aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveTimeError(f"{what} must carry a time zone")
    return moment


def _bp(basis_points: int) -> str:
    whole, part = divmod(basis_points, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}%"


# -- inputs ------------------------------------------------------------------------------


class PromotionKind(StrEnum):
    FLASH_SALE = "flash_sale"
    GROUP_BUY = "group_buy"
    ROOM_SPECIAL = "room_special"
    STORE_DISCOUNT = "store_discount"


KIND_LABELS = {
    PromotionKind.FLASH_SALE: "flash sale",
    PromotionKind.GROUP_BUY: "group price",
    PromotionKind.ROOM_SPECIAL: "room special price",
    PromotionKind.STORE_DISCOUNT: "store discount",
}

DEFAULT_LADDER = (
    PromotionKind.FLASH_SALE,
    PromotionKind.GROUP_BUY,
    PromotionKind.ROOM_SPECIAL,
    PromotionKind.STORE_DISCOUNT,
)


@dataclass(frozen=True)
class PriceFloor:
    """The lowest unit price a line may reach: the greater of ``min_unit_price`` and
    ``min_percent_of_list_bps`` of the list price (rounded up). No floor: zero."""

    min_unit_price: Money | None = None
    min_percent_of_list_bps: int = 0

    def __post_init__(self) -> None:
        _validate_rate(self.min_percent_of_list_bps, "a floor's percentage of list", 0)

    def unit_floor(self, list_unit_price: Money) -> Money:
        by_percent = list_unit_price.percent_up(self.min_percent_of_list_bps)
        if self.min_unit_price is None:
            return by_percent
        return max(by_percent, self.min_unit_price)


@dataclass(frozen=True)
class QuoteLine:
    sku_id: str
    quantity: int
    list_unit_price: Money
    floor: PriceFloor = field(default_factory=PriceFloor)

    def __post_init__(self) -> None:
        validate_id(self.sku_id, "SKU id")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise InvalidQuantityError(f"a quantity is a whole number, not {self.quantity!r}")
        if not 1 <= self.quantity <= MAX_QUANTITY:
            raise InvalidQuantityError(
                f"quantity of {self.sku_id} must be 1 to {MAX_QUANTITY}, got {self.quantity}"
            )
        if self.floor.unit_floor(self.list_unit_price) > self.list_unit_price:
            raise InvalidPriceFloorError(
                f"the floor of {self.sku_id} is above its list price {self.list_unit_price}"
            )


@dataclass(frozen=True)
class FlashSalePrice:
    promotion_id: str
    sku_id: str
    unit_price: Money

    def __post_init__(self) -> None:
        validate_id(self.promotion_id, "promotion id")
        validate_id(self.sku_id, "SKU id")


@dataclass(frozen=True)
class GroupPrice:
    """The price of a group buy's SKU; it counts only when the order names a group."""

    promotion_id: str
    sku_id: str
    unit_price: Money

    def __post_init__(self) -> None:
        validate_id(self.promotion_id, "promotion id")
        validate_id(self.sku_id, "SKU id")


@dataclass(frozen=True)
class RoomSpecialPrice:
    """A special price in one live room; it counts only for orders from that room."""

    promotion_id: str
    room_id: str
    sku_id: str
    unit_price: Money

    def __post_init__(self) -> None:
        validate_id(self.promotion_id, "promotion id")
        validate_id(self.room_id, "room id")
        validate_id(self.sku_id, "SKU id")


@dataclass(frozen=True)
class StoreDiscount:
    """A percentage off the list price (rounded down per unit), for the given SKUs or,
    with none given, for every SKU of the store."""

    promotion_id: str
    percent_bps: int
    sku_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        validate_id(self.promotion_id, "promotion id")
        _validate_rate(self.percent_bps, "a store discount", 1)
        for sku_id in self.sku_ids:
            validate_id(sku_id, "SKU id")

    def covers(self, sku_id: str) -> bool:
        return not self.sku_ids or sku_id in self.sku_ids


class CouponKind(StrEnum):
    FIXED_AMOUNT = "fixed_amount"
    PERCENT = "percent"
    THRESHOLD = "threshold"
    FREE_SHIPPING = "free_shipping"


@dataclass(frozen=True)
class CouponScope:
    """Whom a coupon is for: always one merchant; narrowed to one room and/or some SKUs.
    Merchant scope: neither; room scope: ``room_id``; SKU scope: ``sku_ids``."""

    merchant_id: str
    room_id: str | None = None
    sku_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        validate_merchant_id(self.merchant_id)
        if self.room_id is not None:
            validate_id(self.room_id, "room id")
        for sku_id in self.sku_ids:
            validate_id(sku_id, "SKU id")

    def covers(self, sku_id: str) -> bool:
        return not self.sku_ids or sku_id in self.sku_ids


@dataclass(frozen=True)
class CouponTemplate:
    """What a coupon is worth and where. ``amount`` for fixed and threshold coupons,
    ``percent_bps`` and optionally ``cap`` for percent coupons; ``threshold`` (spend at
    least) is required for threshold coupons and optional for the others."""

    template_id: str
    kind: CouponKind
    scope: CouponScope
    valid_from: datetime
    valid_until: datetime
    amount: Money | None = None
    percent_bps: int | None = None
    cap: Money | None = None
    threshold: Money | None = None
    stackable: bool = False

    def __post_init__(self) -> None:
        validate_id(self.template_id, "coupon template id")
        _validate_aware(self.valid_from, "a coupon's valid_from")
        _validate_aware(self.valid_until, "a coupon's valid_until")
        if self.valid_until <= self.valid_from:
            raise InvalidCouponTemplateError(
                f"coupon template {self.template_id} must end after it starts"
            )
        takes_amount = self.kind in (CouponKind.FIXED_AMOUNT, CouponKind.THRESHOLD)
        if takes_amount != (self.amount is not None):
            raise InvalidCouponTemplateError(
                f"a {self.kind} coupon {'needs' if takes_amount else 'takes no'} amount"
            )
        if self.amount is not None and self.amount.amount == 0:
            raise InvalidCouponTemplateError("a coupon's amount must be above zero")
        is_percent = self.kind is CouponKind.PERCENT
        if is_percent != (self.percent_bps is not None):
            raise InvalidCouponTemplateError(
                f"a {self.kind} coupon {'needs' if is_percent else 'takes no'} percent_bps"
            )
        if self.percent_bps is not None:
            _validate_rate(self.percent_bps, "a percent coupon", 1)
        if self.cap is not None and not is_percent:
            raise InvalidCouponTemplateError("only a percent coupon has a cap")
        if self.cap is not None and self.cap.amount == 0:
            raise InvalidCouponTemplateError("a percent coupon's cap must be above zero")
        if self.kind is CouponKind.THRESHOLD:
            if self.threshold is None or self.threshold.amount == 0:
                raise InvalidCouponTemplateError("a threshold coupon needs a threshold above 0")
            if self.amount is not None and self.amount > self.threshold:
                raise InvalidCouponTemplateError(
                    f"a threshold coupon cannot save more ({self.amount}) than its "
                    f"threshold ({self.threshold})"
                )
        currencies = {
            money.currency for money in (self.amount, self.cap, self.threshold) if money is not None
        }
        if len(currencies) > 1:
            raise CurrencyMismatchError(
                f"coupon template {self.template_id} mixes {sorted(currencies)}"
            )

    def money(self) -> tuple[Money, ...]:
        return tuple(m for m in (self.amount, self.cap, self.threshold) if m is not None)


@dataclass(frozen=True)
class Coupon:
    """One coupon a buyer holds, of a template."""

    coupon_id: str
    owner_id: str
    template: CouponTemplate

    def __post_init__(self) -> None:
        validate_id(self.coupon_id, "coupon id")
        validate_id(self.owner_id, "coupon owner id")


@dataclass(frozen=True)
class StackingRules:
    """How promotions combine. ``ladder``: price promotion kinds, highest priority first;
    a kind left out never applies. ``coupon_on_flash_sale``: whether coupons also take
    money off lines at a flash-sale price. One coupon per order unless every coupon's
    template is stackable: that rule is the templates', not configured here."""

    ladder: tuple[PromotionKind, ...] = DEFAULT_LADDER
    coupon_on_flash_sale: bool = False

    def __post_init__(self) -> None:
        for kind in self.ladder:
            if not isinstance(kind, PromotionKind):
                raise InvalidStackingRulesError(f"{kind!r} is not a promotion kind")
        if len(set(self.ladder)) != len(self.ladder):
            raise InvalidStackingRulesError("a promotion kind appears twice in the ladder")


@dataclass(frozen=True)
class QuoteRequest:
    """One merchant's order to price, at ``at``. All money is in ``currency``. ``channel``
    (mini-program, H5, app) is carried for the record; no rule depends on it yet."""

    merchant_id: str
    buyer_id: str
    currency: str
    at: datetime
    lines: tuple[QuoteLine, ...]
    room_id: str | None = None
    channel: str = ""
    group_id: str | None = None
    flash_sale_prices: tuple[FlashSalePrice, ...] = ()
    group_prices: tuple[GroupPrice, ...] = ()
    room_special_prices: tuple[RoomSpecialPrice, ...] = ()
    store_discounts: tuple[StoreDiscount, ...] = ()
    coupons: tuple[Coupon, ...] = ()
    shipping_fee: Money | None = None
    """None: no shipping charged."""

    def __post_init__(self) -> None:
        validate_merchant_id(self.merchant_id)
        validate_id(self.buyer_id, "buyer id")
        validate_currency(self.currency)
        _validate_aware(self.at, "the quote's time")
        if self.room_id is not None:
            validate_id(self.room_id, "room id")
        if self.group_id is not None:
            validate_id(self.group_id, "group id")
        if not self.lines:
            raise NoLinesError("a quote needs at least one line")
        if len(self.lines) > MAX_LINES:
            raise TooManyLinesError(f"a quote has at most {MAX_LINES} lines")
        seen: set[str] = set()
        for line in self.lines:
            if line.sku_id in seen:
                raise DuplicateLineError(f"SKU {line.sku_id} appears on two lines")
            seen.add(line.sku_id)
        if len(self.coupons) > MAX_COUPONS:
            raise TooManyCouponsError(f"an order takes at most {MAX_COUPONS} coupons")
        coupon_ids = [coupon.coupon_id for coupon in self.coupons]
        if len(set(coupon_ids)) != len(coupon_ids):
            raise DuplicateCouponError("the same coupon is given twice")
        for money in self._all_money():
            if money.currency != self.currency:
                raise CurrencyMismatchError(f"the quote is in {self.currency}; {money} is not")

    def _all_money(self) -> list[Money]:
        found: list[Money] = []
        for line in self.lines:
            found.append(line.list_unit_price)
            if line.floor.min_unit_price is not None:
                found.append(line.floor.min_unit_price)
        found += [offer.unit_price for offer in self.flash_sale_prices]
        found += [offer.unit_price for offer in self.group_prices]
        found += [offer.unit_price for offer in self.room_special_prices]
        for coupon in self.coupons:
            found += coupon.template.money()
        if self.shipping_fee is not None:
            found.append(self.shipping_fee)
        return found


# -- output ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedPromotion:
    kind: PromotionKind
    promotion_id: str
    offer_unit_price: Money
    """The promotion's own price; the line's unit price is higher when the floor clamps it."""
    reason: str


@dataclass(frozen=True)
class LineQuote:
    sku_id: str
    quantity: int
    list_unit_price: Money
    unit_price: Money
    """After the price promotion and the floor, before coupons."""
    promotion: AppliedPromotion | None
    floor_unit_price: Money
    list_total: Money
    promotion_discount: Money
    coupon_share: Money
    total: Money


@dataclass(frozen=True)
class AppliedCoupon:
    coupon_id: str
    template_id: str
    kind: CouponKind
    discount: Money
    """Taken off the lines: the sum of ``shares``."""
    shipping_discount: Money
    unused: Money
    """What the coupon was worth on the lines but could not take without passing a floor."""
    shares: tuple[Money, ...]
    """One per quote line, in line order; zero on lines the coupon is not for."""


@dataclass(frozen=True)
class Quote:
    currency: str
    lines: tuple[LineQuote, ...]
    coupons: tuple[AppliedCoupon, ...]
    subtotal: Money
    promotion_discount: Money
    coupon_discount: Money
    shipping_fee: Money
    shipping_discount: Money
    total: Money
    explanation: tuple[str, ...]


# -- the rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Offer:
    kind: PromotionKind
    promotion_id: str
    unit_price: Money


@dataclass(frozen=True)
class _PricedLine:
    line: QuoteLine
    unit_price: Money
    floor_unit_price: Money
    promotion: AppliedPromotion | None

    @property
    def at_flash_sale(self) -> bool:
        return self.promotion is not None and self.promotion.kind is PromotionKind.FLASH_SALE


def quote(request: QuoteRequest, rules: StackingRules | None = None) -> Quote:
    """Price ``request`` by ``rules`` (default: ``StackingRules()``); see the module."""
    rules = rules or StackingRules()
    currency = request.currency
    steps: list[str] = []
    priced = [_price_line(line, request, rules, steps) for line in request.lines]

    promoted = [p.unit_price.times(p.line.quantity) for p in priced]
    floors = [p.floor_unit_price.times(p.line.quantity) for p in priced]
    amounts = list(promoted)
    shipping_fee = request.shipping_fee or Money.zero(currency)
    shipping_left = shipping_fee

    if len(request.coupons) > 1:
        for coupon in request.coupons:
            if not coupon.template.stackable:
                raise CouponNotStackableError(
                    f"one coupon per order: coupon {coupon.coupon_id} does not stack"
                )
    applied: list[AppliedCoupon] = []
    for coupon in request.coupons:
        used = _apply_coupon(
            coupon, request, rules, priced, promoted, floors, amounts, shipping_left, steps
        )
        shipping_left = shipping_left - used.shipping_discount
        applied.append(used)

    lines = tuple(
        _line_quote(p, amounts[i], [c.shares[i] for c in applied], currency)
        for i, p in enumerate(priced)
    )
    subtotal = total([line.list_total for line in lines], currency)
    promotion_discount = total([line.promotion_discount for line in lines], currency)
    coupon_discount = total([c.discount for c in applied], currency)
    shipping_discount = total([c.shipping_discount for c in applied], currency)
    grand_total = total([line.total for line in lines], currency) + shipping_left
    steps.append(
        f"total {grand_total} = subtotal {subtotal} - promotions {promotion_discount}"
        f" - coupons {coupon_discount} + shipping {shipping_fee}"
        f" - shipping discount {shipping_discount}"
    )
    return Quote(
        currency=currency,
        lines=lines,
        coupons=tuple(applied),
        subtotal=subtotal,
        promotion_discount=promotion_discount,
        coupon_discount=coupon_discount,
        shipping_fee=shipping_fee,
        shipping_discount=shipping_discount,
        total=grand_total,
        explanation=tuple(steps),
    )


def _line_quote(
    priced: _PricedLine, final: Money, shares: Sequence[Money], currency: str
) -> LineQuote:
    line = priced.line
    list_total = line.list_unit_price.times(line.quantity)
    return LineQuote(
        sku_id=line.sku_id,
        quantity=line.quantity,
        list_unit_price=line.list_unit_price,
        unit_price=priced.unit_price,
        promotion=priced.promotion,
        floor_unit_price=priced.floor_unit_price,
        list_total=list_total,
        promotion_discount=list_total - priced.unit_price.times(line.quantity),
        coupon_share=total(shares, currency),
        total=final,
    )


def _offers(line: QuoteLine, request: QuoteRequest, steps: list[str]) -> list[_Offer]:
    sku = line.sku_id
    offers = [
        _Offer(PromotionKind.FLASH_SALE, offer.promotion_id, offer.unit_price)
        for offer in request.flash_sale_prices
        if offer.sku_id == sku
    ]
    for group_offer in request.group_prices:
        if group_offer.sku_id != sku:
            continue
        if request.group_id is None:
            steps.append(
                f"{sku}: group price {group_offer.promotion_id} ignored: the order is not "
                "part of a group"
            )
            continue
        offers.append(
            _Offer(PromotionKind.GROUP_BUY, group_offer.promotion_id, group_offer.unit_price)
        )
    for room_offer in request.room_special_prices:
        if room_offer.sku_id != sku:
            continue
        if room_offer.room_id != request.room_id:
            where = f"room {request.room_id}" if request.room_id else "no room"
            steps.append(
                f"{sku}: room special price {room_offer.promotion_id} ignored: it is for "
                f"room {room_offer.room_id}, the order comes from {where}"
            )
            continue
        offers.append(
            _Offer(PromotionKind.ROOM_SPECIAL, room_offer.promotion_id, room_offer.unit_price)
        )
    for discount in request.store_discounts:
        if discount.covers(sku):
            off = line.list_unit_price.percent_down(discount.percent_bps)
            offers.append(
                _Offer(
                    PromotionKind.STORE_DISCOUNT,
                    discount.promotion_id,
                    line.list_unit_price - off,
                )
            )
    return offers


def _price_line(
    line: QuoteLine, request: QuoteRequest, rules: StackingRules, steps: list[str]
) -> _PricedLine:
    sku = line.sku_id
    list_price = line.list_unit_price
    floor = line.floor.unit_floor(list_price)
    usable: list[_Offer] = []
    for offer in _offers(line, request, steps):
        label = f"{KIND_LABELS[offer.kind]} {offer.promotion_id}"
        if offer.kind not in rules.ladder:
            steps.append(f"{sku}: {label} ignored: the ladder leaves out {offer.kind}")
        elif offer.unit_price >= list_price:
            steps.append(
                f"{sku}: {label} ignored: its price {offer.unit_price} is not below the "
                f"list price {list_price}"
            )
        else:
            usable.append(offer)
    if not usable:
        steps.append(f"{sku}: no promotion; list price {list_price} x {line.quantity}")
        return _PricedLine(line, list_price, floor, None)

    rank = {kind: position for position, kind in enumerate(rules.ladder)}
    usable.sort(key=lambda o: (rank[o.kind], o.unit_price.amount, o.promotion_id))
    chosen, others = usable[0], usable[1:]
    ladder = " > ".join(KIND_LABELS[kind] for kind in rules.ladder)
    reason = (
        f"{KIND_LABELS[chosen.kind]} {chosen.promotion_id} at {chosen.unit_price}: "
        f"the highest rung with an offer on the ladder {ladder}"
    )
    same_rung = [o for o in others if o.kind is chosen.kind]
    lower_rungs = [o for o in others if o.kind is not chosen.kind]
    if same_rung:
        reason += f"; the lowest of {len(same_rung) + 1} {KIND_LABELS[chosen.kind]} offers"
    if lower_rungs:
        outranked = ", ".join(
            f"{KIND_LABELS[o.kind]} {o.promotion_id} ({o.unit_price})" for o in lower_rungs
        )
        reason += f"; it outranks {outranked}"
    steps.append(f"{sku}: {reason}")
    unit_price = chosen.unit_price
    if unit_price < floor:
        steps.append(f"{sku}: {chosen.unit_price} is below the floor {floor}; clamped to the floor")
        unit_price = floor
    promotion = AppliedPromotion(chosen.kind, chosen.promotion_id, chosen.unit_price, reason)
    return _PricedLine(line, unit_price, floor, promotion)


def _apply_coupon(
    coupon: Coupon,
    request: QuoteRequest,
    rules: StackingRules,
    priced: Sequence[_PricedLine],
    promoted: Sequence[Money],
    floors: Sequence[Money],
    amounts: list[Money],
    shipping_left: Money,
    steps: list[str],
) -> AppliedCoupon:
    """Checks that ``coupon`` may be used, takes its discount off ``amounts`` (in place) and
    says how it was split."""
    template = coupon.template
    scope = template.scope
    name = f"coupon {coupon.coupon_id}"
    currency = request.currency
    zero = Money.zero(currency)
    if coupon.owner_id != request.buyer_id:
        raise CouponNotOwnedError(f"{name} belongs to another buyer")
    if request.at < template.valid_from:
        raise CouponOutsideValidityError(
            f"{name} is not valid yet: it starts at {template.valid_from.isoformat()}"
        )
    if request.at >= template.valid_until:
        raise CouponOutsideValidityError(
            f"{name} has expired: it ended at {template.valid_until.isoformat()}"
        )
    if scope.merchant_id != request.merchant_id:
        raise CouponOutOfScopeError(f"{name} is for another merchant's orders")
    if scope.room_id is not None and scope.room_id != request.room_id:
        raise CouponOutOfScopeError(f"{name} is only for orders from room {scope.room_id}")
    covered = [i for i, p in enumerate(priced) if scope.covers(p.line.sku_id)]
    if not covered:
        raise CouponOutOfScopeError(f"{name} covers none of the order's SKUs")
    eligible = [i for i in covered if rules.coupon_on_flash_sale or not priced[i].at_flash_sale]
    if not eligible:
        raise CouponOutOfScopeError(
            f"{name} covers only lines at a flash-sale price, and coupons do not apply on "
            "top of flash sales"
        )
    for i in covered:
        if i not in eligible:
            steps.append(
                f"{name}: {priced[i].line.sku_id} left out: coupons do not apply on top of "
                "flash sales"
            )
    eligible_subtotal = total([promoted[i] for i in eligible], currency)
    if template.threshold is not None:
        if eligible_subtotal < template.threshold:
            raise CouponThresholdNotMetError(
                f"{name} needs {template.threshold} on its lines; they come to "
                f"{eligible_subtotal}, {template.threshold - eligible_subtotal} short"
            )
        steps.append(f"{name}: threshold {template.threshold} met by {eligible_subtotal}")

    base = total([amounts[i] for i in eligible], currency)
    shipping_discount = zero
    if template.kind is CouponKind.PERCENT:
        assert template.percent_bps is not None
        asked = base.percent_down(template.percent_bps)
        steps.append(f"{name}: {_bp(template.percent_bps)} of {base} is {asked}")
        if template.cap is not None and asked > template.cap:
            steps.append(f"{name}: capped at {template.cap}")
            asked = template.cap
    elif template.kind is CouponKind.FREE_SHIPPING:
        asked = zero
        shipping_discount = shipping_left
        steps.append(f"{name}: free shipping, {shipping_discount} off the shipping fee")
    else:
        assert template.amount is not None
        asked = template.amount
        steps.append(f"{name}: {asked} off")

    room = [(amounts[i] - floors[i]).amount for i in eligible]
    granted = min(asked.amount, sum(room))
    if granted < asked.amount:
        steps.append(
            f"{name}: only {Money(granted, currency)} can be taken without going below the "
            f"lines' floors; {Money(asked.amount - granted, currency)} unused"
        )
    split = allocate_capped(granted, [amounts[i].amount for i in eligible], room)
    shares = [zero] * len(priced)
    for i, share in zip(eligible, split, strict=True):
        shares[i] = Money(share, currency)
        amounts[i] = amounts[i] - shares[i]
    if granted and template.kind is not CouponKind.FREE_SHIPPING:
        parts = ", ".join(f"{priced[i].line.sku_id} {shares[i]}" for i in eligible)
        steps.append(f"{name}: split by line amount: {parts}")
    return AppliedCoupon(
        coupon_id=coupon.coupon_id,
        template_id=template.template_id,
        kind=template.kind,
        discount=Money(granted, currency),
        shipping_discount=shipping_discount,
        unused=Money(asked.amount - granted, currency),
        shares=tuple(shares),
    )
