"""PriceOrder and ReleaseCoupons: price an order from what promotion knows now, and lock its
coupons for the order.

Lookups: the SKUs' list prices, the campaign live in the room for each SKU (its flash price
and its inventory sale, which the order holds its units from), the live room special
prices and store discounts, the group price of the group the buyer is a member of, and the
buyer's coupons with their templates. Then the pure quote. With an order id, the coupons
are locked for the order in one transaction (all or none), re-checked under their locks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.kit.errors import InvalidArgumentError
from services.kit.eventstore import utcnow
from services.promotion.application.coupons import Coupons
from services.promotion.application.group_buys import GroupRecords
from services.promotion.application.ports import CouponRecords
from services.promotion.domain.campaigns import Campaign
from services.promotion.domain.money import Money
from services.promotion.domain.ordering import PriceOrder
from services.promotion.domain.prices import PriceNotFoundError, PricePromotion
from services.promotion.domain.quote import (
    FlashSalePrice,
    GroupPrice,
    Quote,
    QuoteLine,
    QuoteRequest,
    RoomSpecialPrice,
    StoreDiscount,
    quote,
)

MAX_LOCK = timedelta(days=1)


class PriceLookup(Protocol):
    async def list_prices(self, merchant_id: str, sku_ids: Sequence[str]) -> dict[str, Money]: ...

    async def live_promotions(self, merchant_id: str, at: datetime) -> list[PricePromotion]: ...


class CampaignLookup(Protocol):
    async def live_in_room(
        self, merchant_id: str, room_id: str, sku_ids: Sequence[str], at: datetime
    ) -> dict[str, Campaign]:
        """The campaign live at ``at`` in the room, for each SKU that has one."""
        ...


@dataclass(frozen=True)
class PricedOrder:
    quote: Quote
    sale_ids: tuple[str, ...]
    """One per line: the inventory sale its units are held from."""
    locked_coupon_ids: tuple[str, ...]


class Pricing:
    def __init__(
        self,
        prices: PriceLookup,
        campaigns: CampaignLookup,
        groups: GroupRecords,
        coupons: Coupons,
        coupon_records: CouponRecords,
        *,
        clock: Callable[[], datetime] = utcnow,
        default_lock: timedelta = timedelta(minutes=15),
    ) -> None:
        self._prices = prices
        self._campaigns = campaigns
        self._groups = groups
        self._coupons = coupons
        self._coupon_records = coupon_records
        self._clock = clock
        self._default_lock = default_lock

    async def price_order(self, command: PriceOrder) -> PricedOrder:
        command = command.validated()
        now = self._clock()
        merchant_id = command.merchant_id
        until = command.lock_until or now + self._default_lock
        if command.order_id is not None and not now < until <= now + MAX_LOCK:
            raise InvalidArgumentError("lock_until must be in the future, within a day")
        skus = [line.sku_id for line in command.lines]
        list_prices = await self._prices.list_prices(merchant_id, skus)
        for sku_id in skus:
            if sku_id not in list_prices:
                raise PriceNotFoundError(f"SKU {sku_id} has no list price")
        live = (
            await self._campaigns.live_in_room(merchant_id, command.room_id, skus, now)
            if command.room_id is not None
            else {}
        )
        for sku_id in skus:
            if sku_id not in live:
                raise command.not_on_sale(sku_id)
        group_prices: tuple[GroupPrice, ...] = ()
        if command.group_id is not None:
            group = await self._groups.group(merchant_id, command.group_id)
            group.check_member(command.buyer_id, now)
            offer = await self._groups.offer(merchant_id, group.offer_id)
            group_prices = (GroupPrice(offer.created.offer_id, group.sku_id, offer.group_price),)
        held = await self._coupons.held(merchant_id, command.coupon_ids)
        for coupon in held:
            coupon.check_usable_by(command.buyer_id, command.order_id, now)
        templates = await self._coupon_records.templates(
            merchant_id, sorted({c.template_id for c in held})
        )
        promotions = await self._prices.live_promotions(merchant_id, now)
        room_specials: list[RoomSpecialPrice] = []
        discounts: list[StoreDiscount] = []
        for promotion in promotions:
            if command.room_id is not None:
                special = promotion.room_special(command.room_id)
                if special is not None:
                    room_specials.append(special)
            discount = promotion.store_discount()
            if discount is not None:
                discounts.append(discount)
        result = quote(
            QuoteRequest(
                merchant_id=merchant_id,
                buyer_id=command.buyer_id,
                currency=list_prices[skus[0]].currency,
                at=now,
                lines=tuple(
                    QuoteLine(line.sku_id, line.quantity, list_prices[line.sku_id])
                    for line in command.lines
                ),
                room_id=command.room_id,
                channel=command.channel,
                group_id=command.group_id,
                flash_sale_prices=tuple(
                    FlashSalePrice(live[sku].campaign_id, sku, price)
                    for sku in skus
                    if (price := live[sku].flash_price) is not None
                ),
                group_prices=group_prices,
                room_special_prices=tuple(room_specials),
                store_discounts=tuple(discounts),
                coupons=tuple(c.for_quote(templates[c.template_id]) for c in held),
            )
        )
        locked: tuple[str, ...] = ()
        if command.order_id is not None and (
            command.coupon_ids
            or await self._coupon_records.order_holds_coupons(merchant_id, command.order_id)
        ):
            # An order that brings no coupon and holds none has nothing to lock or release:
            # no transaction (the common checkout of a flash sale).
            async with self._coupon_records.transaction() as conn:
                locked = await self._coupons.lock_for_order(
                    conn,
                    merchant_id,
                    command.buyer_id,
                    command.order_id,
                    command.coupon_ids,
                    until,
                )
        return PricedOrder(result, tuple(live[sku].campaign_id for sku in skus), locked)
