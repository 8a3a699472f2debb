"""Mapping between the quote's domain types and ``livecommerce.promotion.v1`` messages.

Pure functions, both ways. Reading a request refuses what the wire allows but the domain
has no word for (an unset required field, an unspecified or unknown enum value, a time
outside the datetime range) with :class:`InvalidArgumentError`; everything else is left to
the domain types' own validation, which raises the same kind of error. In proto3 an empty
string stands for an absent optional id (``room_id``, ``group_id``, a scope's room).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from livecommerce.promotion.v1 import promotion_pb2 as pb
from services.kit.errors import InvalidArgumentError
from services.kit.wire import moment, timestamp
from services.promotion.domain.money import Money
from services.promotion.domain.quote import (
    AppliedCoupon,
    AppliedPromotion,
    Coupon,
    CouponKind,
    CouponScope,
    CouponTemplate,
    FlashSalePrice,
    GroupPrice,
    LineQuote,
    PriceFloor,
    PromotionKind,
    Quote,
    QuoteLine,
    QuoteRequest,
    RoomSpecialPrice,
    StackingRules,
    StoreDiscount,
)

PROMOTION_KINDS: dict[PromotionKind, pb.PromotionKind.ValueType] = {
    PromotionKind.FLASH_SALE: pb.PROMOTION_KIND_FLASH_SALE,
    PromotionKind.GROUP_BUY: pb.PROMOTION_KIND_GROUP_BUY,
    PromotionKind.ROOM_SPECIAL: pb.PROMOTION_KIND_ROOM_SPECIAL,
    PromotionKind.STORE_DISCOUNT: pb.PROMOTION_KIND_STORE_DISCOUNT,
}
COUPON_KINDS: dict[CouponKind, pb.CouponKind.ValueType] = {
    CouponKind.FIXED_AMOUNT: pb.COUPON_KIND_FIXED_AMOUNT,
    CouponKind.PERCENT: pb.COUPON_KIND_PERCENT,
    CouponKind.THRESHOLD: pb.COUPON_KIND_THRESHOLD,
    CouponKind.FREE_SHIPPING: pb.COUPON_KIND_FREE_SHIPPING,
}
_PROMOTION_KINDS_BACK = {wire: kind for kind, wire in PROMOTION_KINDS.items()}
_COUPON_KINDS_BACK = {wire: kind for kind, wire in COUPON_KINDS.items()}


# -- scalars -----------------------------------------------------------------------------


def money_to_proto(money: Money) -> pb.Money:
    return pb.Money(amount_minor=money.amount, currency=money.currency)


def money_from_proto(message: pb.Money) -> Money:
    return Money(message.amount_minor, message.currency)


def timestamp_from_proto(stamp: Timestamp, what: str) -> datetime:
    try:
        return moment(stamp)
    except (ValueError, OverflowError) as error:
        raise InvalidArgumentError(f"{what} is not a valid time") from error


def _optional_id(value: str) -> str | None:
    return value or None


def _required_money(parent: object, field: str, what: str) -> Money:
    if not parent.HasField(field):  # type: ignore[attr-defined]
        raise InvalidArgumentError(f"{what} is required")
    message: pb.Money = getattr(parent, field)
    return money_from_proto(message)


def _optional_money(parent: object, field: str) -> Money | None:
    if not parent.HasField(field):  # type: ignore[attr-defined]
        return None
    message: pb.Money = getattr(parent, field)
    return money_from_proto(message)


def _required_time(parent: object, field: str, what: str) -> datetime:
    if not parent.HasField(field):  # type: ignore[attr-defined]
        raise InvalidArgumentError(f"{what} is required")
    stamp: Timestamp = getattr(parent, field)
    return timestamp_from_proto(stamp, what)


def promotion_kind_from_proto(value: int) -> PromotionKind:
    try:
        return _PROMOTION_KINDS_BACK[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgumentError(f"{value} is not a promotion kind") from None


def coupon_kind_from_proto(value: int) -> CouponKind:
    try:
        return _COUPON_KINDS_BACK[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgumentError(f"{value} is not a coupon kind") from None


def _moneys(amounts: Iterable[Money]) -> list[pb.Money]:
    return [money_to_proto(amount) for amount in amounts]


# -- request: proto -> domain ------------------------------------------------------------


def _floor_from_proto(message: pb.PriceFloor) -> PriceFloor:
    return PriceFloor(
        min_unit_price=_optional_money(message, "min_unit_price"),
        min_percent_of_list_bps=message.min_percent_of_list_bps,
    )


def _line_from_proto(message: pb.QuoteLine) -> QuoteLine:
    return QuoteLine(
        sku_id=message.sku_id,
        quantity=message.quantity,
        list_unit_price=_required_money(
            message, "list_unit_price", f"the list price of {message.sku_id or 'a line'}"
        ),
        floor=_floor_from_proto(message.floor) if message.HasField("floor") else PriceFloor(),
    )


def _template_from_proto(message: pb.CouponTemplate) -> CouponTemplate:
    if not message.HasField("scope"):
        raise InvalidArgumentError(f"coupon template {message.template_id} needs a scope")
    scope = message.scope
    return CouponTemplate(
        template_id=message.template_id,
        kind=coupon_kind_from_proto(message.kind),
        scope=CouponScope(
            merchant_id=scope.merchant_id,
            room_id=_optional_id(scope.room_id),
            sku_ids=frozenset(scope.sku_ids),
        ),
        valid_from=_required_time(message, "valid_from", "a coupon's valid_from"),
        valid_until=_required_time(message, "valid_until", "a coupon's valid_until"),
        amount=_optional_money(message, "amount"),
        percent_bps=message.percent_bps if message.HasField("percent_bps") else None,
        cap=_optional_money(message, "cap"),
        threshold=_optional_money(message, "threshold"),
        stackable=message.stackable,
    )


def _coupon_from_proto(message: pb.Coupon) -> Coupon:
    if not message.HasField("template"):
        raise InvalidArgumentError(f"coupon {message.coupon_id} needs its template")
    return Coupon(
        coupon_id=message.coupon_id,
        owner_id=message.owner_id,
        template=_template_from_proto(message.template),
    )


def rules_from_proto(message: pb.QuoteRequest) -> StackingRules:
    """The request's stacking rules; the defaults when it sets none."""
    if not message.HasField("rules"):
        return StackingRules()
    return StackingRules(
        ladder=tuple(promotion_kind_from_proto(kind) for kind in message.rules.ladder),
        coupon_on_flash_sale=message.rules.coupon_on_flash_sale,
    )


def request_from_proto(message: pb.QuoteRequest, merchant_id: str | None = None) -> QuoteRequest:
    """The domain request; ``merchant_id`` (the one the caller may act for) replaces the
    message's when given."""
    return QuoteRequest(
        merchant_id=merchant_id if merchant_id is not None else message.merchant_id,
        buyer_id=message.buyer_id,
        currency=message.currency,
        at=_required_time(message, "at", "the quote's time (at)"),
        lines=tuple(_line_from_proto(line) for line in message.lines),
        room_id=_optional_id(message.room_id),
        channel=message.channel,
        group_id=_optional_id(message.group_id),
        flash_sale_prices=tuple(
            FlashSalePrice(
                promotion_id=offer.promotion_id,
                sku_id=offer.sku_id,
                unit_price=_required_money(
                    offer, "unit_price", f"the price of flash sale {offer.promotion_id}"
                ),
            )
            for offer in message.flash_sale_prices
        ),
        group_prices=tuple(
            GroupPrice(
                promotion_id=offer.promotion_id,
                sku_id=offer.sku_id,
                unit_price=_required_money(
                    offer, "unit_price", f"the price of group buy {offer.promotion_id}"
                ),
            )
            for offer in message.group_prices
        ),
        room_special_prices=tuple(
            RoomSpecialPrice(
                promotion_id=offer.promotion_id,
                room_id=offer.room_id,
                sku_id=offer.sku_id,
                unit_price=_required_money(
                    offer, "unit_price", f"the price of room special {offer.promotion_id}"
                ),
            )
            for offer in message.room_special_prices
        ),
        store_discounts=tuple(
            StoreDiscount(
                promotion_id=discount.promotion_id,
                percent_bps=discount.percent_bps,
                sku_ids=frozenset(discount.sku_ids),
            )
            for discount in message.store_discounts
        ),
        coupons=tuple(_coupon_from_proto(coupon) for coupon in message.coupons),
        shipping_fee=_optional_money(message, "shipping_fee"),
    )


# -- request: domain -> proto ------------------------------------------------------------


def _floor_to_proto(floor: PriceFloor) -> pb.PriceFloor:
    message = pb.PriceFloor(min_percent_of_list_bps=floor.min_percent_of_list_bps)
    if floor.min_unit_price is not None:
        message.min_unit_price.CopyFrom(money_to_proto(floor.min_unit_price))
    return message


def _template_to_proto(template: CouponTemplate) -> pb.CouponTemplate:
    message = pb.CouponTemplate(
        template_id=template.template_id,
        kind=COUPON_KINDS[template.kind],
        scope=pb.CouponScope(
            merchant_id=template.scope.merchant_id,
            room_id=template.scope.room_id or "",
            sku_ids=sorted(template.scope.sku_ids),
        ),
        valid_from=timestamp(template.valid_from),
        valid_until=timestamp(template.valid_until),
        stackable=template.stackable,
    )
    if template.amount is not None:
        message.amount.CopyFrom(money_to_proto(template.amount))
    if template.percent_bps is not None:
        message.percent_bps = template.percent_bps
    if template.cap is not None:
        message.cap.CopyFrom(money_to_proto(template.cap))
    if template.threshold is not None:
        message.threshold.CopyFrom(money_to_proto(template.threshold))
    return message


def request_to_proto(request: QuoteRequest, rules: StackingRules | None = None) -> pb.QuoteRequest:
    """The wire form of ``request`` (and of ``rules`` when given)."""
    message = pb.QuoteRequest(
        merchant_id=request.merchant_id,
        buyer_id=request.buyer_id,
        room_id=request.room_id or "",
        channel=request.channel,
        group_id=request.group_id or "",
        currency=request.currency,
        at=timestamp(request.at),
        lines=[
            pb.QuoteLine(
                sku_id=line.sku_id,
                quantity=line.quantity,
                list_unit_price=money_to_proto(line.list_unit_price),
                floor=_floor_to_proto(line.floor),
            )
            for line in request.lines
        ],
        flash_sale_prices=[
            pb.FlashSalePrice(
                promotion_id=offer.promotion_id,
                sku_id=offer.sku_id,
                unit_price=money_to_proto(offer.unit_price),
            )
            for offer in request.flash_sale_prices
        ],
        group_prices=[
            pb.GroupPrice(
                promotion_id=offer.promotion_id,
                sku_id=offer.sku_id,
                unit_price=money_to_proto(offer.unit_price),
            )
            for offer in request.group_prices
        ],
        room_special_prices=[
            pb.RoomSpecialPrice(
                promotion_id=offer.promotion_id,
                room_id=offer.room_id,
                sku_id=offer.sku_id,
                unit_price=money_to_proto(offer.unit_price),
            )
            for offer in request.room_special_prices
        ],
        store_discounts=[
            pb.StoreDiscount(
                promotion_id=discount.promotion_id,
                percent_bps=discount.percent_bps,
                sku_ids=sorted(discount.sku_ids),
            )
            for discount in request.store_discounts
        ],
        coupons=[
            pb.Coupon(
                coupon_id=coupon.coupon_id,
                owner_id=coupon.owner_id,
                template=_template_to_proto(coupon.template),
            )
            for coupon in request.coupons
        ],
    )
    if request.shipping_fee is not None:
        message.shipping_fee.CopyFrom(money_to_proto(request.shipping_fee))
    if rules is not None:
        message.rules.CopyFrom(
            pb.StackingRules(
                ladder=[PROMOTION_KINDS[kind] for kind in rules.ladder],
                coupon_on_flash_sale=rules.coupon_on_flash_sale,
            )
        )
    return message


# -- reply: domain -> proto --------------------------------------------------------------


def _line_quote_to_proto(line: LineQuote) -> pb.LineQuote:
    message = pb.LineQuote(
        sku_id=line.sku_id,
        quantity=line.quantity,
        list_unit_price=money_to_proto(line.list_unit_price),
        unit_price=money_to_proto(line.unit_price),
        floor_unit_price=money_to_proto(line.floor_unit_price),
        list_total=money_to_proto(line.list_total),
        promotion_discount=money_to_proto(line.promotion_discount),
        coupon_share=money_to_proto(line.coupon_share),
        total=money_to_proto(line.total),
    )
    if line.promotion is not None:
        message.promotion.CopyFrom(
            pb.AppliedPromotion(
                kind=PROMOTION_KINDS[line.promotion.kind],
                promotion_id=line.promotion.promotion_id,
                offer_unit_price=money_to_proto(line.promotion.offer_unit_price),
                reason=line.promotion.reason,
            )
        )
    return message


def coupon_reasons(coupon_id: str, explanation: Iterable[str]) -> list[str]:
    """The explanation steps about one coupon: those that start ``coupon <id>:``."""
    prefix = f"coupon {coupon_id}:"
    return [step for step in explanation if step.startswith(prefix)]


def quote_to_proto(result: Quote) -> pb.QuoteReply:
    return pb.QuoteReply(
        currency=result.currency,
        lines=[_line_quote_to_proto(line) for line in result.lines],
        coupons=[
            pb.AppliedCoupon(
                coupon_id=coupon.coupon_id,
                template_id=coupon.template_id,
                kind=COUPON_KINDS[coupon.kind],
                discount=money_to_proto(coupon.discount),
                shipping_discount=money_to_proto(coupon.shipping_discount),
                unused=money_to_proto(coupon.unused),
                shares=_moneys(coupon.shares),
                reasons=coupon_reasons(coupon.coupon_id, result.explanation),
            )
            for coupon in result.coupons
        ],
        subtotal=money_to_proto(result.subtotal),
        promotion_discount=money_to_proto(result.promotion_discount),
        coupon_discount=money_to_proto(result.coupon_discount),
        shipping_fee=money_to_proto(result.shipping_fee),
        shipping_discount=money_to_proto(result.shipping_discount),
        total=money_to_proto(result.total),
        explanation=list(result.explanation),
    )


# -- reply: proto -> domain --------------------------------------------------------------


def _line_quote_from_proto(message: pb.LineQuote) -> LineQuote:
    promotion = None
    if message.HasField("promotion"):
        promotion = AppliedPromotion(
            kind=promotion_kind_from_proto(message.promotion.kind),
            promotion_id=message.promotion.promotion_id,
            offer_unit_price=money_from_proto(message.promotion.offer_unit_price),
            reason=message.promotion.reason,
        )
    return LineQuote(
        sku_id=message.sku_id,
        quantity=message.quantity,
        list_unit_price=money_from_proto(message.list_unit_price),
        unit_price=money_from_proto(message.unit_price),
        promotion=promotion,
        floor_unit_price=money_from_proto(message.floor_unit_price),
        list_total=money_from_proto(message.list_total),
        promotion_discount=money_from_proto(message.promotion_discount),
        coupon_share=money_from_proto(message.coupon_share),
        total=money_from_proto(message.total),
    )


def quote_from_proto(message: pb.QuoteReply) -> Quote:
    """The domain quote a reply carries (a client's view; the reasons per coupon are
    derived from the explanation and not kept)."""
    return Quote(
        currency=message.currency,
        lines=tuple(_line_quote_from_proto(line) for line in message.lines),
        coupons=tuple(
            AppliedCoupon(
                coupon_id=coupon.coupon_id,
                template_id=coupon.template_id,
                kind=coupon_kind_from_proto(coupon.kind),
                discount=money_from_proto(coupon.discount),
                shipping_discount=money_from_proto(coupon.shipping_discount),
                unused=money_from_proto(coupon.unused),
                shares=tuple(money_from_proto(share) for share in coupon.shares),
            )
            for coupon in message.coupons
        ),
        subtotal=money_from_proto(message.subtotal),
        promotion_discount=money_from_proto(message.promotion_discount),
        coupon_discount=money_from_proto(message.coupon_discount),
        shipping_fee=money_from_proto(message.shipping_fee),
        shipping_discount=money_from_proto(message.shipping_discount),
        total=money_from_proto(message.total),
        explanation=tuple(message.explanation),
    )
