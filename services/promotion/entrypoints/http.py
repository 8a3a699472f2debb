"""Promotion's HTTP API: merchants set prices, price promotions, coupon templates, flash-sale
campaigns and group-buy offers; buyers claim coupons (a coupon rain), see their coupons,
open and join group buys. Errors are problem+json (docs at ``/docs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Path, Request
from pydantic import AwareDatetime, BaseModel, Field

from services.kit.http import CurrentCaller, PageQuery, add_readiness_check, create_app
from services.kit.identity import Caller, Role
from services.kit.ratelimit import ExemptNetworks, client_address
from services.kit.tenancy import MAX_ID_LENGTH, MERCHANT_ID_PATTERN
from services.promotion.bootstrap import Promotion, promotion
from services.promotion.domain.campaigns import (
    MAX_CAMPAIGN_PER_USER_LIMIT,
    MAX_CAMPAIGN_QUANTITY,
    MAX_HOLD_TTL_SECONDS,
    Campaign,
    ScheduleCampaign,
)
from services.promotion.domain.coupons import (
    MAX_PER_USER_LIMIT,
    MAX_QUOTA,
    ClaimCoupon,
    CreateCouponTemplate,
    HeldCoupon,
    TemplateDefinition,
)
from services.promotion.domain.group_buys import (
    MAX_GROUP_SECONDS,
    MAX_GROUP_SIZE,
    MIN_GROUP_SECONDS,
    MIN_GROUP_SIZE,
    CreateGroupOffer,
    Group,
    GroupOffer,
)
from services.promotion.domain.money import BASIS_POINTS, MAX_AMOUNT, Money
from services.promotion.domain.prices import (
    PricePromotion,
    RoomSpecialPriceSet,
    SetListPrice,
    SetRoomSpecialPrice,
    SetStoreDiscount,
)
from services.promotion.domain.quote import CouponKind, CouponScope, CouponTemplate
from services.promotion.settings import PromotionSettings

MERCHANT_ROLES = (Role.MERCHANT_ADMIN, Role.OPERATOR)
BUYER_ROLES = (Role.VIEWER,)
ID_PATTERN = r"^[\x21-\x7e]+$"

Id = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
MerchantId = Annotated[str, Path(pattern=MERCHANT_ID_PATTERN.pattern)]
IdField = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT, description="Minor units (fen for CNY)")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]


# -- bodies and answers ------------------------------------------------------------------


class PriceBody(BaseModel):
    amount_minor: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    currency: Currency


class ListPrice(BaseModel):
    sku_id: str
    amount_minor: int
    currency: str


class RoomSpecialBody(BaseModel):
    sku_id: IdField
    room_id: IdField | None = Field(default=None, description="None: any room")
    amount_minor: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    currency: Currency
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class StoreDiscountBody(BaseModel):
    percent_bps: Annotated[int, Field(ge=1, le=BASIS_POINTS)]
    sku_ids: list[IdField] = Field(default_factory=list, max_length=200)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class PricePromotionView(BaseModel):
    promotion_id: str
    kind: str
    removed: bool
    sku_id: str | None = None
    room_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    percent_bps: int | None = None
    sku_ids: list[str] = Field(default_factory=list)
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @classmethod
    def of(cls, found: PricePromotion) -> PricePromotionView:
        offer = found.offer
        view = cls(
            promotion_id=found.promotion_id,
            kind=found.kind,
            removed=found.removed,
            starts_at=offer.starts_at,
            ends_at=offer.ends_at,
        )
        if isinstance(offer, RoomSpecialPriceSet):
            view.sku_id, view.room_id = offer.sku_id, offer.room_id or None
            view.amount_minor, view.currency = offer.amount_minor, offer.currency
        else:
            view.percent_bps, view.sku_ids = offer.percent_bps, list(offer.sku_ids)
        return view


class TemplateBody(BaseModel):
    template_id: IdField
    kind: Literal["fixed_amount", "percent", "threshold", "free_shipping"]
    currency: Currency
    room_id: IdField | None = None
    sku_ids: list[IdField] = Field(default_factory=list, max_length=200)
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    amount_minor: Amount | None = None
    percent_bps: Annotated[int, Field(ge=1, le=BASIS_POINTS)] | None = None
    cap_minor: Amount | None = None
    threshold_minor: Amount | None = None
    stackable: bool = False
    quota: Annotated[int, Field(ge=1, le=MAX_QUOTA)]
    per_user_limit: Annotated[int, Field(ge=1, le=MAX_PER_USER_LIMIT)] = 1
    restore_on_refund: bool = False
    claim_starts_at: AwareDatetime | None = None
    claim_ends_at: AwareDatetime | None = None


class TemplateView(BaseModel):
    template_id: str
    kind: str
    quota: int
    claimed: int
    per_user_limit: int
    stopped: bool
    restore_on_refund: bool
    valid_from: datetime
    valid_until: datetime
    claim_starts_at: datetime
    claim_ends_at: datetime

    @classmethod
    def of(cls, t: TemplateDefinition) -> TemplateView:
        c = t.created
        return cls(
            template_id=c.template_id,
            kind=c.kind,
            quota=c.quota,
            claimed=t.claimed,
            per_user_limit=c.per_user_limit,
            stopped=t.stopped,
            restore_on_refund=c.restore_on_refund,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            claim_starts_at=c.claim_starts_at,
            claim_ends_at=c.claim_ends_at,
        )


class ClaimBody(BaseModel):
    claim_id: IdField = Field(description="Chosen by the client once per tap; the coupon's id")


class ClaimAnswer(BaseModel):
    outcome: Literal["claimed", "sold_out"]
    coupon_id: str | None
    template_id: str


class CouponView(BaseModel):
    coupon_id: str
    template_id: str
    state: str
    order_id: str | None

    @classmethod
    def of(cls, coupon: HeldCoupon) -> CouponView:
        return cls(
            coupon_id=coupon.coupon_id,
            template_id=coupon.template_id,
            state=coupon.state.value,
            order_id=coupon.order_id,
        )


class CampaignBody(BaseModel):
    campaign_id: IdField = Field(description="Also the inventory sale's id")
    sku_id: IdField
    room_id: IdField
    quantity: Annotated[int, Field(ge=1, le=MAX_CAMPAIGN_QUANTITY)]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    per_user_limit: Annotated[int, Field(ge=1, le=MAX_CAMPAIGN_PER_USER_LIMIT)]
    flash_price: PriceBody | None = None
    hold_ttl_seconds: Annotated[int, Field(ge=0, le=MAX_HOLD_TTL_SECONDS)] = Field(
        default=0, description="How long a buyer's hold lasts unpaid; 0: inventory's default"
    )


class CampaignView(BaseModel):
    campaign_id: str
    sku_id: str
    room_id: str
    state: str
    quantity: int
    per_user_limit: int
    flash_price_minor: int | None
    currency: str
    starts_at: datetime
    ends_at: datetime
    seconds_to_start: float
    seconds_to_end: float

    @classmethod
    def of(cls, campaign: Campaign, now: datetime) -> CampaignView:
        s = campaign.scheduled
        return cls(
            campaign_id=s.campaign_id,
            sku_id=s.sku_id,
            room_id=s.room_id,
            state=campaign.state(now).value,
            quantity=s.quantity,
            per_user_limit=s.per_user_limit,
            flash_price_minor=s.flash_price_minor,
            currency=s.currency,
            starts_at=campaign.live_from,
            ends_at=s.ends_at,
            seconds_to_start=max(0.0, (campaign.live_from - now).total_seconds()),
            seconds_to_end=max(0.0, (s.ends_at - now).total_seconds()),
        )


class GroupOfferBody(BaseModel):
    offer_id: IdField
    sku_id: IdField
    group_price: PriceBody
    required_members: Annotated[int, Field(ge=MIN_GROUP_SIZE, le=MAX_GROUP_SIZE)]
    duration_seconds: Annotated[int, Field(ge=MIN_GROUP_SECONDS, le=MAX_GROUP_SECONDS)]
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class GroupOfferView(BaseModel):
    offer_id: str
    sku_id: str
    group_price_minor: int
    currency: str
    required_members: int
    duration_seconds: int
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, offer: GroupOffer) -> GroupOfferView:
        c = offer.created
        return cls(
            offer_id=c.offer_id,
            sku_id=c.sku_id,
            group_price_minor=c.group_price_minor,
            currency=c.currency,
            required_members=c.required_members,
            duration_seconds=c.duration_seconds,
            starts_at=c.starts_at,
            ends_at=c.ends_at,
        )


class OpenGroupBody(BaseModel):
    group_id: IdField


class GroupView(BaseModel):
    group_id: str
    offer_id: str
    sku_id: str
    state: str
    required_members: int
    paid_members: int
    members: list[str]
    deadline: datetime

    @classmethod
    def of(cls, group: Group) -> GroupView:
        return cls(
            group_id=group.group_id,
            offer_id=group.offer_id,
            sku_id=group.sku_id,
            state=group.state.value,
            required_members=group.required_members,
            paid_members=group.paid_members,
            members=[m.member_id for m in group.members if not m.left],
            deadline=group.deadline,
        )


# -- routes ------------------------------------------------------------------------------

merchant = APIRouter(prefix="/v1", tags=["merchant"])
buyer = APIRouter(prefix="/v1/merchants/{merchant_id}", tags=["buyer"])


def _parts(request: Request) -> Promotion:
    parts: Promotion = request.app.state.promotion
    return parts


def _merchant(caller: Caller) -> str:
    caller.require_role(*MERCHANT_ROLES)
    return caller.tenant()


@merchant.put("/prices/{sku_id}", summary="Set a SKU's list price")
async def set_price(
    sku_id: Id, body: PriceBody, caller: CurrentCaller, request: Request
) -> ListPrice:
    merchant_id = _merchant(caller)
    event = SetListPrice(merchant_id, sku_id, Money(body.amount_minor, body.currency)).event()
    await _parts(request).prices.set_list_price(merchant_id, event)
    return ListPrice(sku_id=sku_id, amount_minor=event.amount_minor, currency=event.currency)


@merchant.get("/prices/{sku_id}", summary="A SKU's list price")
async def get_price(sku_id: Id, caller: CurrentCaller, request: Request) -> ListPrice:
    price = await _parts(request).prices.list_price(_merchant(caller), sku_id)
    return ListPrice(sku_id=sku_id, amount_minor=price.amount, currency=price.currency)


@merchant.put("/room-specials/{promotion_id}", summary="Set a room special price (直播间专享价)")
async def set_room_special(
    promotion_id: Id, body: RoomSpecialBody, caller: CurrentCaller, request: Request
) -> PricePromotionView:
    merchant_id = _merchant(caller)
    event = SetRoomSpecialPrice(
        merchant_id=merchant_id,
        promotion_id=promotion_id,
        sku_id=body.sku_id,
        room_id=body.room_id,
        price=Money(body.amount_minor, body.currency),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
    ).event()
    return PricePromotionView.of(await _parts(request).prices.set_promotion(merchant_id, event))


@merchant.put("/store-discounts/{promotion_id}", summary="Set a store discount")
async def set_store_discount(
    promotion_id: Id, body: StoreDiscountBody, caller: CurrentCaller, request: Request
) -> PricePromotionView:
    merchant_id = _merchant(caller)
    event = SetStoreDiscount(
        merchant_id=merchant_id,
        promotion_id=promotion_id,
        percent_bps=body.percent_bps,
        sku_ids=tuple(body.sku_ids),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
    ).event()
    return PricePromotionView.of(await _parts(request).prices.set_promotion(merchant_id, event))


@merchant.get("/price-promotions", summary="The merchant's price promotions")
async def price_promotions(
    caller: CurrentCaller, request: Request, page: PageQuery
) -> list[PricePromotionView]:
    found = await _parts(request).prices.all_promotions(
        _merchant(caller), limit=page.limit, offset=page.offset
    )
    return [PricePromotionView.of(p) for p in found]


@merchant.delete("/price-promotions/{promotion_id}", summary="Remove a price promotion")
async def remove_price_promotion(
    promotion_id: Id, caller: CurrentCaller, request: Request
) -> PricePromotionView:
    removed = await _parts(request).prices.remove_promotion(_merchant(caller), promotion_id)
    return PricePromotionView.of(removed)


@merchant.post("/coupon-templates", status_code=201, summary="Create a coupon template (a drop)")
async def create_template(
    body: TemplateBody, caller: CurrentCaller, request: Request
) -> TemplateView:
    merchant_id = _merchant(caller)

    def money(amount: int | None) -> Money | None:
        return None if amount is None else Money(amount, body.currency)

    template = CouponTemplate(
        template_id=body.template_id,
        kind=CouponKind(body.kind),
        scope=CouponScope(merchant_id, body.room_id, frozenset(body.sku_ids)),
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        amount=money(body.amount_minor),
        percent_bps=body.percent_bps,
        cap=money(body.cap_minor),
        threshold=money(body.threshold_minor),
        stackable=body.stackable,
    )
    created = await _parts(request).coupons.create_template(
        CreateCouponTemplate(
            merchant_id=merchant_id,
            template=template,
            quota=body.quota,
            per_user_limit=body.per_user_limit,
            restore_on_refund=body.restore_on_refund,
            claim_starts_at=body.claim_starts_at,
            claim_ends_at=body.claim_ends_at,
        )
    )
    return TemplateView.of(created)


@merchant.get("/coupon-templates/{template_id}", summary="A template and how many were claimed")
async def get_template(template_id: Id, caller: CurrentCaller, request: Request) -> TemplateView:
    found = await _parts(request).coupon_ledger.template(_merchant(caller), template_id)
    return TemplateView.of(found)


@merchant.post("/coupon-templates/{template_id}/stop", summary="Stop the drop: no more claims")
async def stop_template(template_id: Id, caller: CurrentCaller, request: Request) -> TemplateView:
    stopped = await _parts(request).coupons.stop(_merchant(caller), template_id)
    return TemplateView.of(stopped)


@merchant.post(
    "/coupon-templates/{template_id}/rebuild", summary="Rebuild the drop in Redis from events"
)
async def rebuild_template(
    template_id: Id, caller: CurrentCaller, request: Request
) -> TemplateView:
    caller.require_role(Role.MERCHANT_ADMIN)
    merchant_id = caller.tenant()
    parts = _parts(request)
    await parts.coupons.rebuild(merchant_id, template_id, force=True)
    return TemplateView.of(await parts.coupon_ledger.template(merchant_id, template_id))


@merchant.post("/campaigns", status_code=201, summary="Schedule a flash-sale campaign")
async def schedule_campaign(
    body: CampaignBody, caller: CurrentCaller, request: Request
) -> CampaignView:
    merchant_id = _merchant(caller)
    campaigns = _parts(request).campaigns
    flash = body.flash_price
    campaign = await campaigns.schedule(
        ScheduleCampaign(
            merchant_id=merchant_id,
            campaign_id=body.campaign_id,
            sku_id=body.sku_id,
            room_id=body.room_id,
            quantity=body.quantity,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            per_user_limit=body.per_user_limit,
            flash_price=None if flash is None else Money(flash.amount_minor, flash.currency),
            hold_ttl_seconds=body.hold_ttl_seconds,
        )
    )
    return CampaignView.of(campaign, campaigns.now())


@merchant.get("/campaigns/{campaign_id}", summary="A campaign with its countdown")
async def get_campaign(campaign_id: Id, caller: CurrentCaller, request: Request) -> CampaignView:
    caller.require_role(*MERCHANT_ROLES, Role.HOST)
    parts = _parts(request)
    found = await parts.campaign_book.campaign(caller.tenant(), campaign_id)
    return CampaignView.of(found, parts.campaigns.now())


@merchant.post("/campaigns/{campaign_id}/start", summary="Start a campaign now")
async def start_campaign(campaign_id: Id, caller: CurrentCaller, request: Request) -> CampaignView:
    caller.require_role(*MERCHANT_ROLES, Role.HOST)
    campaigns = _parts(request).campaigns
    return CampaignView.of(await campaigns.start(caller.tenant(), campaign_id), campaigns.now())


@merchant.post("/campaigns/{campaign_id}/stop", summary="End a campaign now")
async def stop_campaign(campaign_id: Id, caller: CurrentCaller, request: Request) -> CampaignView:
    caller.require_role(*MERCHANT_ROLES, Role.HOST)
    campaigns = _parts(request).campaigns
    return CampaignView.of(await campaigns.stop(caller.tenant(), campaign_id), campaigns.now())


@merchant.post("/group-offers", status_code=201, summary="Create a group-buy offer (拼团)")
async def create_group_offer(
    body: GroupOfferBody, caller: CurrentCaller, request: Request
) -> GroupOfferView:
    merchant_id = _merchant(caller)
    offer = await _parts(request).groups.create_offer(
        CreateGroupOffer(
            merchant_id=merchant_id,
            offer_id=body.offer_id,
            sku_id=body.sku_id,
            group_price=Money(body.group_price.amount_minor, body.group_price.currency),
            required_members=body.required_members,
            duration_seconds=body.duration_seconds,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
        )
    )
    return GroupOfferView.of(offer)


def _buyer(caller: Caller) -> str:
    caller.require_role(*BUYER_ROLES)
    return caller.subject


@buyer.post(
    "/coupon-templates/{template_id}/claims",
    summary="Claim a coupon (sold out is no error)",
    responses={429: {"description": "Too many claims on this drop from this buyer or address"}},
)
async def claim(
    merchant_id: MerchantId,
    template_id: Id,
    body: ClaimBody,
    caller: CurrentCaller,
    request: Request,
) -> ClaimAnswer:
    address = client_address(request)
    exempt: ExemptNetworks = request.app.state.rate_limit_exempt
    result = await _parts(request).coupons.claim(
        ClaimCoupon(merchant_id, template_id, _buyer(caller), body.claim_id),
        address=None if exempt.cover(address) else address,
    )
    return ClaimAnswer(
        outcome="claimed" if result.claimed else "sold_out",
        coupon_id=result.claim_id if result.claimed else None,
        template_id=template_id,
    )


@buyer.get("/coupons", summary="The caller's coupons of this merchant")
async def my_coupons(
    merchant_id: MerchantId, caller: CurrentCaller, request: Request, page: PageQuery
) -> list[CouponView]:
    found = await _parts(request).coupons.wallet(
        merchant_id, _buyer(caller), limit=page.limit, offset=page.offset
    )
    return [CouponView.of(c) for c in found]


@buyer.get("/group-offers/{offer_id}", summary="A group-buy offer")
async def group_offer(
    merchant_id: MerchantId, offer_id: Id, caller: CurrentCaller, request: Request
) -> GroupOfferView:
    _buyer(caller)
    return GroupOfferView.of(await _parts(request).group_ledger.offer(merchant_id, offer_id))


@buyer.post("/group-offers/{offer_id}/groups", status_code=201, summary="Open a group and lead it")
async def open_group(
    merchant_id: MerchantId,
    offer_id: Id,
    body: OpenGroupBody,
    caller: CurrentCaller,
    request: Request,
) -> GroupView:
    group = await _parts(request).groups.open(merchant_id, offer_id, body.group_id, _buyer(caller))
    return GroupView.of(group)


@buyer.post("/groups/{group_id}/members", summary="Join a group")
async def join_group(
    merchant_id: MerchantId, group_id: Id, caller: CurrentCaller, request: Request
) -> GroupView:
    group = await _parts(request).groups.join(merchant_id, group_id, _buyer(caller))
    return GroupView.of(group)


@buyer.get("/groups/{group_id}", summary="A group and its members")
async def get_group(
    merchant_id: MerchantId, group_id: Id, caller: CurrentCaller, request: Request
) -> GroupView:
    _buyer(caller)
    return GroupView.of(await _parts(request).group_ledger.group(merchant_id, group_id))


def create_http_app(settings: PromotionSettings, parts: Promotion | None = None) -> FastAPI:
    """The app; ``parts`` given (tests), it uses them instead of building its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rate_limit_exempt = ExemptNetworks(settings.exempt_networks)
        if parts is not None:
            app.state.promotion = parts
            yield
            return
        async with promotion(settings) as built:
            app.state.promotion = built
            add_readiness_check(app, "postgres", lambda: built.pool.fetchval("SELECT 1"))
            add_readiness_check(app, "redis", built.redis.ping)
            yield

    # The buyers' routes first: a coupon rain's claims are matched before the merchants'
    # routes are tried (routes are matched in order; the two sets share no path).
    return create_app(settings, title="Promotion", routers=[buyer, merchant], lifespan=lifespan)
