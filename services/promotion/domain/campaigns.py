"""Flash-sale campaigns: a room sells a number of units of one SKU, at a flash price or
not, in a window with a countdown, with a per-user limit.

The campaign's stock is an inventory flash sale of the same id: scheduling a campaign hands
the allocation to inventory, ending it closes the sale and returns the unsold units. The
inventory sale opens when the campaign is scheduled; promotion decides when the campaign
is *live* (``starts_at <= now < ends_at`` and not stopped): PriceOrder prices a line only
from a live campaign, so no unit of a campaign is sold before it starts. Starting a
campaign now moves its start to now. Two campaigns of one SKU whose windows overlap are
refused, whatever their rooms: a unit is held through one sale at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from services.kit.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
)
from services.kit.tenancy import validate_id, validate_merchant_id
from services.promotion.domain.money import Money
from services.promotion.domain.prices import validate_window

MAX_CAMPAIGN_QUANTITY = 1_000_000
MAX_CAMPAIGN_PER_USER_LIMIT = 100
MAX_HOLD_TTL_SECONDS = 24 * 3600


class InvalidCampaignError(InvalidArgumentError):
    pass


class CampaignNotFoundError(NotFoundError):
    pass


class CampaignExistsError(AlreadyExistsError):
    pass


class CampaignOverlapError(PreconditionFailedError):
    pass


class CampaignInAnotherRoomError(PreconditionFailedError):
    """A room acted on a campaign that sells in another room (a host launches only their own)."""


class CampaignEndedError(PreconditionFailedError):
    pass


class CampaignState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


@dataclass(frozen=True)
class CampaignScheduled:
    campaign_id: str
    sku_id: str
    room_id: str
    flash_price_minor: int | None
    currency: str
    quantity: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    stock_opens_at: datetime
    hold_ttl_seconds: int


@dataclass(frozen=True)
class CampaignStarted:
    campaign_id: str
    sku_id: str
    room_id: str
    started_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class CampaignEnded:
    campaign_id: str
    sku_id: str
    room_id: str
    ended_at: datetime
    reason: str


CampaignEvent = CampaignScheduled | CampaignStarted | CampaignEnded


@dataclass(frozen=True)
class ScheduleCampaign:
    merchant_id: str
    campaign_id: str
    sku_id: str
    room_id: str
    quantity: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    flash_price: Money | None = None
    hold_ttl_seconds: int = 0
    """How long a buyer's hold lasts unpaid; 0: inventory's default."""

    def event(self, now: datetime) -> CampaignScheduled:
        validate_merchant_id(self.merchant_id)
        validate_id(self.campaign_id, "campaign id")
        validate_id(self.sku_id, "SKU id")
        validate_id(self.room_id, "room id")
        if not 1 <= self.quantity <= MAX_CAMPAIGN_QUANTITY:
            raise InvalidCampaignError(f"a campaign sells 1 to {MAX_CAMPAIGN_QUANTITY} units")
        if not 1 <= self.per_user_limit <= MAX_CAMPAIGN_PER_USER_LIMIT:
            raise InvalidCampaignError(
                f"a campaign's per-user limit is 1 to {MAX_CAMPAIGN_PER_USER_LIMIT}"
            )
        validate_window(self.starts_at, self.ends_at, f"campaign {self.campaign_id}")
        if self.ends_at <= now:
            raise InvalidCampaignError(f"campaign {self.campaign_id} would end in the past")
        if not 0 <= self.hold_ttl_seconds <= MAX_HOLD_TTL_SECONDS:
            raise InvalidCampaignError(f"a hold lasts at most {MAX_HOLD_TTL_SECONDS} seconds")
        if self.flash_price is not None and self.flash_price.amount == 0:
            raise InvalidCampaignError("a flash price must be above zero")
        return CampaignScheduled(
            campaign_id=self.campaign_id,
            sku_id=self.sku_id,
            room_id=self.room_id,
            flash_price_minor=None if self.flash_price is None else self.flash_price.amount,
            currency="" if self.flash_price is None else self.flash_price.currency,
            quantity=self.quantity,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            per_user_limit=self.per_user_limit,
            stock_opens_at=min(now, self.starts_at),
            hold_ttl_seconds=self.hold_ttl_seconds,
        )


@dataclass(frozen=True)
class Campaign:
    merchant_id: str
    scheduled: CampaignScheduled
    started_at: datetime | None = None
    ended: bool = False
    version: int = 1

    @property
    def campaign_id(self) -> str:
        return self.scheduled.campaign_id

    @property
    def flash_price(self) -> Money | None:
        s = self.scheduled
        return None if s.flash_price_minor is None else Money(s.flash_price_minor, s.currency)

    @property
    def live_from(self) -> datetime:
        """Its start, or the earlier moment it was started at."""
        if self.started_at is None:
            return self.scheduled.starts_at
        return min(self.started_at, self.scheduled.starts_at)

    def state(self, now: datetime) -> CampaignState:
        if self.ended or now >= self.scheduled.ends_at:
            return CampaignState.ENDED
        if self.live_from <= now:
            return CampaignState.LIVE
        return CampaignState.SCHEDULED

    def overlaps(self, other: CampaignScheduled) -> bool:
        s = self.scheduled
        return (
            not self.ended
            and s.sku_id == other.sku_id
            and s.starts_at < other.ends_at
            and other.starts_at < s.ends_at
        )

    def same_definition(self, other: CampaignScheduled) -> bool:
        """The same campaign asked for again (its stock opening time aside)."""
        return replace(self.scheduled, stock_opens_at=other.stock_opens_at) == other

    def start(self, now: datetime) -> CampaignStarted | None:
        """Start now, or record the start its time has come to; None when recorded already."""
        if self.state(now) is CampaignState.ENDED:
            raise CampaignEndedError(f"campaign {self.campaign_id} has ended")
        if self.started_at is not None:
            return None
        s = self.scheduled
        # Early (start now): it starts now. Late (the start timer fired after the time):
        # it started at its time.
        return CampaignStarted(s.campaign_id, s.sku_id, s.room_id, min(now, s.starts_at), s.ends_at)

    def end(self, now: datetime, reason: str) -> CampaignEnded | None:
        """None when it ended already."""
        if self.ended:
            return None
        s = self.scheduled
        return CampaignEnded(s.campaign_id, s.sku_id, s.room_id, now, reason)

    def after(self, event: CampaignStarted | CampaignEnded) -> Campaign:
        if isinstance(event, CampaignStarted):
            return replace(self, started_at=event.started_at, version=self.version + 1)
        return replace(self, ended=True, version=self.version + 1)
