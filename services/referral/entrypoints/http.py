"""Referral's HTTP API: for users (share codes, invitation cards, earnings, the ledger,
withdrawals) and for merchants (the programme, red-packet campaigns, withdrawal and
commission reviews, reports, leaderboards)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Literal
from uuid import uuid4

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from services.kit.http import CurrentCaller, PageQuery, add_readiness_check, create_app
from services.kit.identity import Caller, Role
from services.kit.tenancy import MAX_ID_LENGTH
from services.referral.adapters.queries import LedgerLine, ReviewRow, WithdrawalRow
from services.referral.application import withdrawals
from services.referral.application.commission import (
    campaign_board,
    review_commission,
    room_board,
)
from services.referral.application.merchants import configure_programme, start_campaign
from services.referral.application.sharing import CardRequest, mint_share_code, resolve_share_code
from services.referral.bootstrap import Referral, referral
from services.referral.domain.codes import MintShareCode, ShareCode, ShareTargetKind
from services.referral.domain.programme import (
    DEFAULT_ATTRIBUTION_WINDOW_SECONDS,
    DEFAULT_RETURN_WINDOW_SECONDS,
    MAX_RATE_BPS,
    Programme,
    ProgrammeNotFoundError,
)
from services.referral.domain.red_packets import (
    MAX_BUDGET_MINOR,
    CampaignNotFoundError,
    CreateRedPacketCampaign,
    RedPacketCampaign,
)
from services.referral.domain.withdrawals import RequestWithdrawal, Withdrawal
from services.referral.settings import ReferralSettings

USER_ROLES = (Role.VIEWER, Role.HOST, Role.OPERATOR, Role.MERCHANT_ADMIN)
MERCHANT_ROLES = (Role.MERCHANT_ADMIN, Role.OPS)
ID_PATTERN = r"^[\x21-\x7e]+$"
Id = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
BodyId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
MerchantQuery = Annotated[
    str, Query(max_length=64, description="The merchant ops act for; merchants act for their own")
]
Bps = Annotated[int, Field(ge=0, le=MAX_RATE_BPS)]
Minor = Annotated[int, Field(ge=0, le=MAX_BUDGET_MINOR)]
PromotionKind = Literal["flash_sale", "group_buy", "room_special", "store_discount"]

router = APIRouter(prefix="/v1")


def _parts(request: Request) -> Referral:
    parts: Referral = request.app.state.referral
    return parts


def _merchant(caller: Caller, requested: str) -> str:
    caller.require_role(*MERCHANT_ROLES)
    return caller.acting_for(requested, "merchant")


def _user(caller: Caller) -> str:
    caller.require_role(*USER_ROLES)
    return caller.tenant()


class Links(BaseModel):
    mini_program_path: str
    h5_url: str
    app_link: str


class ShareCodeOut(BaseModel):
    code: str
    sharer_id: str
    target_kind: ShareTargetKind
    target_id: str
    created_at: datetime
    links: Links

    @classmethod
    def of(cls, share: ShareCode, parts: Referral) -> ShareCodeOut:
        links = share.links(parts.settings.h5_base_url, parts.settings.app_scheme)
        return cls(
            code=share.code,
            sharer_id=share.sharer_id,
            target_kind=share.target_kind,
            target_id=share.target_id,
            created_at=share.created_at,
            links=Links(
                mini_program_path=links.mini_program_path,
                h5_url=links.h5_url,
                app_link=links.app_link,
            ),
        )


class NewShareCode(BaseModel):
    target_kind: ShareTargetKind
    target_id: BodyId


@router.post("/share-codes", status_code=201, tags=["sharing"], summary="Mint a share code")
async def mint(body: NewShareCode, caller: CurrentCaller, request: Request) -> ShareCodeOut:
    merchant_id = _user(caller)
    parts = _parts(request)
    command = MintShareCode(merchant_id, caller.subject, body.target_kind, body.target_id)
    async with parts.books.transaction() as book:
        share = await mint_share_code(command, book, parts.sharing, parts.clock())
    return ShareCodeOut.of(share, parts)


@router.get("/share-codes", tags=["sharing"], summary="My share codes, newest first")
async def my_codes(
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ShareCodeOut]:
    merchant_id = _user(caller)
    parts = _parts(request)
    async with parts.books.transaction() as book:
        shares = await book.share_codes_of(merchant_id, caller.subject, limit)
    return [ShareCodeOut.of(s, parts) for s in shares]


@router.get("/share-codes/{code}", tags=["sharing"], summary="Verify and resolve a share code")
async def resolve(
    code: Annotated[str, Path(min_length=1, max_length=64)],
    caller: CurrentCaller,
    request: Request,
) -> ShareCodeOut:
    merchant_id = _user(caller)
    parts = _parts(request)
    async with parts.books.transaction() as book:
        share = await resolve_share_code(merchant_id, code, book, parts.signer)
    return ShareCodeOut.of(share, parts)


@router.get(
    "/rooms/{room_id}/card.png",
    tags=["sharing"],
    summary="My invitation card for a room (PNG)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def card(
    room_id: Id,
    caller: CurrentCaller,
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=40)] | None = None,
) -> Response:
    merchant_id = _user(caller)
    parts = _parts(request)
    png, fingerprint = await parts.cards.card(
        CardRequest(merchant_id, room_id, caller.subject, name or caller.subject), parts.clock()
    )
    etag = f'"{fingerprint}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=300"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(png, media_type="image/png", headers=headers)


class Earnings(BaseModel):
    user_id: str
    pending_minor: int
    available_minor: int
    withdrawing_minor: int
    withdrawn_minor: int


@router.get("/me/earnings", tags=["earnings"], summary="My balances, from the ledger")
async def earnings(caller: CurrentCaller, request: Request) -> Earnings:
    merchant_id = _user(caller)
    found = await _parts(request).queries.balances(merchant_id, caller.subject)
    return Earnings(
        user_id=caller.subject,
        **{f"{bucket.value}_minor": amount for bucket, amount in found.items()},
    )


class LedgerEntryOut(BaseModel):
    entry_id: int
    transaction_id: str
    kind: str
    bucket: str
    amount_minor: int
    currency: str
    reference: str
    created_at: datetime

    @classmethod
    def of(cls, line: LedgerLine) -> LedgerEntryOut:
        return cls(**line.__dict__)


@router.get("/me/ledger", tags=["earnings"], summary="My ledger entries, newest first")
async def statement(
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> list[LedgerEntryOut]:
    merchant_id = _user(caller)
    lines = await _parts(request).queries.statement(merchant_id, caller.subject, limit, before)
    return [LedgerEntryOut.of(line) for line in lines]


class NewWithdrawal(BaseModel):
    amount_minor: int = Field(gt=0, le=MAX_BUDGET_MINOR)
    withdrawal_id: BodyId | None = Field(
        default=None, description="Idempotency: the same id and amount answer the same"
    )


class WithdrawalOut(BaseModel):
    withdrawal_id: str
    user_id: str
    amount_minor: int
    currency: str
    state: str
    reviewer_id: str
    provider_payout_id: str

    @classmethod
    def of(cls, found: Withdrawal | WithdrawalRow) -> WithdrawalOut:
        return cls(
            withdrawal_id=found.withdrawal_id,
            user_id=found.user_id,
            amount_minor=found.amount_minor,
            currency=found.currency,
            state=str(found.state),
            reviewer_id=found.reviewer_id,
            provider_payout_id=found.provider_payout_id,
        )


@router.post("/me/withdrawals", status_code=201, tags=["earnings"], summary="Ask to withdraw")
async def withdraw(body: NewWithdrawal, caller: CurrentCaller, request: Request) -> WithdrawalOut:
    merchant_id = _user(caller)
    command = RequestWithdrawal(
        merchant_id, body.withdrawal_id or uuid4().hex, caller.subject, body.amount_minor
    )
    return WithdrawalOut.of(await withdrawals.request(command, _parts(request).books))


@router.get("/me/withdrawals", tags=["earnings"], summary="My withdrawals")
async def my_withdrawals(
    caller: CurrentCaller, request: Request, page: PageQuery
) -> list[WithdrawalOut]:
    merchant_id = _user(caller)
    found = await _parts(request).queries.withdrawals(
        merchant_id, user_id=caller.subject, limit=page.limit, offset=page.offset
    )
    return [WithdrawalOut.of(w) for w in found]


class ProgrammeBody(BaseModel):
    levels: int = Field(default=1, ge=1, le=2)
    default_rate_bps: Bps = 0
    sku_rates: dict[BodyId, Bps] = Field(default_factory=dict, max_length=5000)
    category_rates: dict[BodyId, Bps] = Field(default_factory=dict, max_length=1000)
    sku_categories: dict[BodyId, BodyId] = Field(default_factory=dict, max_length=5000)
    level_two_rate_bps: Bps = 0
    per_order_cap_minor: Minor = 0
    per_day_cap_minor: Minor = 0
    excluded_promotion_kinds: list[PromotionKind] = Field(default_factory=list, max_length=4)
    return_window_seconds: int = Field(
        default=DEFAULT_RETURN_WINDOW_SECONDS, ge=0, le=90 * 24 * 3600
    )
    attribution_window_seconds: int = Field(
        default=DEFAULT_ATTRIBUTION_WINDOW_SECONDS, ge=60, le=30 * 24 * 3600
    )
    min_withdrawal_minor: int = Field(default=100, ge=1, le=MAX_BUDGET_MINOR)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")

    def programme(self, merchant_id: str) -> Programme:
        return Programme(
            merchant_id=merchant_id,
            levels=self.levels,
            default_rate_bps=self.default_rate_bps,
            sku_rates=dict(self.sku_rates),
            category_rates=dict(self.category_rates),
            sku_categories=dict(self.sku_categories),
            level_two_rate_bps=self.level_two_rate_bps,
            per_order_cap_minor=self.per_order_cap_minor,
            per_day_cap_minor=self.per_day_cap_minor,
            excluded_promotion_kinds=frozenset(self.excluded_promotion_kinds),
            return_window_seconds=self.return_window_seconds,
            attribution_window_seconds=self.attribution_window_seconds,
            min_withdrawal_minor=self.min_withdrawal_minor,
            currency=self.currency,
        )


class ProgrammeOut(ProgrammeBody):
    version: int

    @classmethod
    def of(cls, programme: Programme) -> ProgrammeOut:
        fields = {name: getattr(programme, name) for name in ProgrammeBody.model_fields}
        fields["excluded_promotion_kinds"] = sorted(programme.excluded_promotion_kinds)
        return cls.model_validate(fields | {"version": programme.version})


@router.put("/programme", tags=["merchant"], summary="Configure the distribution programme")
async def put_programme(
    body: ProgrammeBody, caller: CurrentCaller, request: Request, merchant_id: MerchantQuery = ""
) -> ProgrammeOut:
    merchant = _merchant(caller, merchant_id)
    configured = await configure_programme(body.programme(merchant), _parts(request).books)
    return ProgrammeOut.of(configured)


@router.get("/programme", tags=["merchant"], summary="The distribution programme")
async def get_programme(
    caller: CurrentCaller, request: Request, merchant_id: MerchantQuery = ""
) -> ProgrammeOut:
    merchant = _merchant(caller, merchant_id)
    async with _parts(request).books.transaction() as book:
        found = await book.programme(merchant)
    if found is None:
        raise ProgrammeNotFoundError("no distribution programme yet")
    return ProgrammeOut.of(found)


class NewCampaign(BaseModel):
    campaign_id: BodyId
    amount_minor: int = Field(gt=0, le=MAX_BUDGET_MINOR)
    budget_minor: int = Field(gt=0, le=MAX_BUDGET_MINOR)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class CampaignOut(BaseModel):
    campaign_id: str
    amount_minor: int
    budget_minor: int
    granted_minor: int
    granted_count: int
    remaining_minor: int
    currency: str
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, campaign: RedPacketCampaign) -> CampaignOut:
        return cls(
            campaign_id=campaign.campaign_id,
            amount_minor=campaign.amount_minor,
            budget_minor=campaign.budget_minor,
            granted_minor=campaign.granted_minor,
            granted_count=campaign.granted_count,
            remaining_minor=campaign.remaining_minor,
            currency=campaign.currency,
            starts_at=campaign.starts_at,
            ends_at=campaign.ends_at,
        )


@router.post(
    "/red-packet-campaigns", status_code=201, tags=["merchant"], summary="Start a campaign"
)
async def new_campaign(
    body: NewCampaign, caller: CurrentCaller, request: Request, merchant_id: MerchantQuery = ""
) -> CampaignOut:
    merchant = _merchant(caller, merchant_id)
    command = CreateRedPacketCampaign(
        merchant,
        body.campaign_id,
        body.amount_minor,
        body.budget_minor,
        body.currency,
        body.starts_at,
        body.ends_at,
    )
    return CampaignOut.of(await start_campaign(command, _parts(request).books))


@router.get("/red-packet-campaigns/{campaign_id}", tags=["merchant"], summary="A campaign's budget")
async def get_campaign(
    campaign_id: Id, caller: CurrentCaller, request: Request, merchant_id: MerchantQuery = ""
) -> CampaignOut:
    merchant = _merchant(caller, merchant_id)
    async with _parts(request).books.transaction() as book:
        found = await book.campaign(merchant, campaign_id)
    if found is None:
        raise CampaignNotFoundError(f"campaign {campaign_id} not found")
    return CampaignOut.of(found)


@router.get("/withdrawals", tags=["merchant"], summary="Withdrawals, by state")
async def list_withdrawals(
    caller: CurrentCaller,
    request: Request,
    merchant_id: MerchantQuery = "",
    state: Literal["requested", "approved", "rejected", "paid"] | None = None,
    *,
    page: PageQuery,
) -> list[WithdrawalOut]:
    merchant = _merchant(caller, merchant_id)
    found = await _parts(request).queries.withdrawals(
        merchant, state=state, limit=page.limit, offset=page.offset
    )
    return [WithdrawalOut.of(w) for w in found]


class Decision(BaseModel):
    reason: str = Field(default="", max_length=200)


@router.post(
    "/withdrawals/{withdrawal_id}/approve", tags=["merchant"], summary="Approve and pay out"
)
async def approve_withdrawal(
    withdrawal_id: Id, caller: CurrentCaller, request: Request, merchant_id: MerchantQuery = ""
) -> WithdrawalOut:
    merchant = _merchant(caller, merchant_id)
    parts = _parts(request)
    done = await withdrawals.approve(
        merchant, withdrawal_id, caller.subject, parts.books, parts.payouts
    )
    return WithdrawalOut.of(done)


@router.post("/withdrawals/{withdrawal_id}/reject", tags=["merchant"], summary="Reject")
async def reject_withdrawal(
    withdrawal_id: Id,
    body: Decision,
    caller: CurrentCaller,
    request: Request,
    merchant_id: MerchantQuery = "",
) -> WithdrawalOut:
    merchant = _merchant(caller, merchant_id)
    done = await withdrawals.reject(
        merchant, withdrawal_id, caller.subject, body.reason, _parts(request).books
    )
    return WithdrawalOut.of(done)


class ReviewOut(BaseModel):
    order_id: str
    buyer_id: str
    sharer_id: str
    flag_reason: str
    outstanding_minor: int
    release_due: bool

    @classmethod
    def of(cls, row: ReviewRow) -> ReviewOut:
        return cls(**row.__dict__)


@router.get("/reviews", tags=["merchant"], summary="Commissions flagged for review")
async def reviews(
    caller: CurrentCaller, request: Request, page: PageQuery, merchant_id: MerchantQuery = ""
) -> list[ReviewOut]:
    merchant = _merchant(caller, merchant_id)
    found = await _parts(request).queries.reviews(merchant, limit=page.limit, offset=page.offset)
    return [ReviewOut.of(r) for r in found]


class ReviewedOut(BaseModel):
    order_id: str
    stage: str
    review: str


@router.post(
    "/reviews/{order_id}/{decision}", tags=["merchant"], summary="Approve or reject a commission"
)
async def review(
    order_id: Id,
    decision: Literal["approve", "reject"],
    caller: CurrentCaller,
    request: Request,
    merchant_id: MerchantQuery = "",
) -> ReviewedOut:
    merchant = _merchant(caller, merchant_id)
    order = await review_commission(
        merchant, order_id, decision == "approve", caller.subject, _parts(request).books
    )
    return ReviewedOut(order_id=order.order_id, stage=order.stage.value, review=order.review.value)


class ReportOut(BaseModel):
    attributed_orders: int
    paid_orders: int
    referred_gmv_minor: int
    refunded_minor: int
    commission_by_kind: dict[str, int]
    red_packets_granted: int
    red_packets_minor: int
    payable_minor: int
    unbalanced_postings: int


@router.get("/reports/summary", tags=["merchant"], summary="Referral figures and ledger check")
async def report(
    caller: CurrentCaller, request: Request, merchant_id: MerchantQuery = ""
) -> ReportOut:
    merchant = _merchant(caller, merchant_id)
    found = await _parts(request).queries.report(merchant)
    return ReportOut(**found.__dict__)


class Ranking(BaseModel):
    rank: int
    sharer_id: str
    referred_gmv_minor: int


async def _board(request: Request, caller: Caller, board: str, limit: int) -> list[Ranking]:
    merchant = _user(caller)
    top = await _parts(request).boards.top(merchant, board, limit)
    return [
        Ranking(rank=i + 1, sharer_id=sharer, referred_gmv_minor=gmv)
        for i, (sharer, gmv) in enumerate(top)
    ]


@router.get("/leaderboards/rooms/{room_id}", tags=["leaderboards"], summary="Top sharers")
async def room_leaderboard(
    room_id: Id,
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[Ranking]:
    return await _board(request, caller, room_board(room_id), limit)


@router.get("/leaderboards/campaigns/{campaign_id}", tags=["leaderboards"], summary="Top sharers")
async def campaign_leaderboard(
    campaign_id: Id,
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[Ranking]:
    return await _board(request, caller, campaign_board(campaign_id), limit)


def create_http_app(settings: ReferralSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with referral(settings) as parts:
            app.state.referral = parts
            add_readiness_check(app, "postgres", lambda: parts.pool.fetchval("SELECT 1"))
            add_readiness_check(app, "redis", parts.redis.ping)
            yield

    return create_app(settings, title="Referral", routers=[router], lifespan=lifespan)
