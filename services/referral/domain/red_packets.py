"""Red-packet campaigns: a fixed red packet to the inviter for each invited friend's first
paid order, until the campaign's budget is spent. The budget is never exceeded: the grant
is decided by one conditional update of the campaign's row (see docs/referral.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.kit.errors import InvalidArgumentError, NotFoundError
from services.kit.tenancy import validate_id, validate_merchant_id

MAX_BUDGET_MINOR = 10_000_000_000


class InvalidCampaignError(InvalidArgumentError):
    pass


class CampaignNotFoundError(NotFoundError):
    pass


@dataclass(frozen=True)
class CreateRedPacketCampaign:
    merchant_id: str
    campaign_id: str
    amount_minor: int
    budget_minor: int
    currency: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RedPacketCampaignCreated:
    campaign_id: str
    amount_minor: int
    budget_minor: int
    currency: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RedPacketGranted:
    campaign_id: str
    inviter_id: str
    invitee_id: str
    order_id: str
    amount_minor: int
    currency: str
    granted_total_minor: int


@dataclass(frozen=True)
class RedPacketCampaign:
    merchant_id: str
    campaign_id: str
    amount_minor: int
    budget_minor: int
    currency: str
    starts_at: datetime
    ends_at: datetime
    granted_minor: int = 0
    granted_count: int = 0

    @staticmethod
    def stream_id(merchant_id: str, campaign_id: str) -> str:
        return f"campaign:{validate_merchant_id(merchant_id)}:{campaign_id}"

    @property
    def remaining_minor(self) -> int:
        return self.budget_minor - self.granted_minor

    def is_running(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


def create_campaign(command: CreateRedPacketCampaign) -> RedPacketCampaignCreated:
    validate_merchant_id(command.merchant_id)
    validate_id(command.campaign_id, "campaign id")
    if command.amount_minor <= 0:
        raise InvalidCampaignError("a red packet holds at least 1 minor unit")
    if not command.amount_minor <= command.budget_minor <= MAX_BUDGET_MINOR:
        raise InvalidCampaignError(
            f"the budget covers at least one red packet and at most {MAX_BUDGET_MINOR}"
        )
    if command.ends_at <= command.starts_at:
        raise InvalidCampaignError("a campaign ends after it starts")
    return RedPacketCampaignCreated(
        campaign_id=command.campaign_id,
        amount_minor=command.amount_minor,
        budget_minor=command.budget_minor,
        currency=command.currency,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
    )
