"""Builders the promotion tests share: a merchant with prices, templates, campaigns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.kit.testing import unique
from services.promotion.bootstrap import Promotion
from services.promotion.domain.campaigns import ScheduleCampaign
from services.promotion.domain.coupons import CreateCouponTemplate, TemplateDefinition
from services.promotion.domain.money import Money
from services.promotion.domain.prices import SetListPrice
from services.promotion.domain.quote import CouponKind, CouponScope, CouponTemplate

CNY = "CNY"


def now() -> datetime:
    return datetime.now(UTC)


def cny(amount: int) -> Money:
    return Money(amount, CNY)


async def list_price(parts: Promotion, merchant_id: str, sku_id: str, amount: int) -> None:
    await parts.prices.set_list_price(
        merchant_id, SetListPrice(merchant_id, sku_id, cny(amount)).event()
    )


async def fixed_template(
    parts: Promotion,
    merchant_id: str,
    *,
    amount: int = 500,
    quota: int = 100,
    per_user_limit: int = 1,
    restore_on_refund: bool = False,
    stackable: bool = False,
    template_id: str | None = None,
) -> TemplateDefinition:
    start = now() - timedelta(minutes=1)
    return await parts.coupons.create_template(
        CreateCouponTemplate(
            merchant_id=merchant_id,
            template=CouponTemplate(
                template_id=template_id or unique("tpl"),
                kind=CouponKind.FIXED_AMOUNT,
                scope=CouponScope(merchant_id),
                valid_from=start,
                valid_until=start + timedelta(days=7),
                amount=cny(amount),
                stackable=stackable,
            ),
            quota=quota,
            per_user_limit=per_user_limit,
            restore_on_refund=restore_on_refund,
        )
    )


async def live_campaign(
    parts: Promotion,
    merchant_id: str,
    sku_id: str,
    room_id: str,
    *,
    flash_price: int | None = None,
    starts_in: float = -60,
    lasts: float = 3600,
) -> str:
    campaign_id = unique("camp")
    starts = now() + timedelta(seconds=starts_in)
    await parts.campaigns.schedule(
        ScheduleCampaign(
            merchant_id=merchant_id,
            campaign_id=campaign_id,
            sku_id=sku_id,
            room_id=room_id,
            quantity=100,
            starts_at=starts,
            ends_at=starts + timedelta(seconds=lasts),
            per_user_limit=2,
            flash_price=None if flash_price is None else cny(flash_price),
        )
    )
    return campaign_id
