"""What the promotion use cases need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.kit.context import MessageContext
from services.kit.db import Connection
from services.kit.errors import KitError
from services.promotion.domain.campaigns import CampaignScheduled
from services.promotion.domain.coupons import (
    ClaimCoupon,
    CouponClaimed,
    CouponEvent,
    CouponTemplateCreated,
    HeldCoupon,
    TemplateDefinition,
)


class StaleEpochError(KitError):
    """The claim was decided against a Redis state that has since been rebuilt: retry."""

    grpc_code = "ABORTED"
    title = "Retry"


@dataclass(frozen=True)
class ClaimDecision:
    """What Redis decided for one claim (see claim.lua)."""

    outcome: str
    remaining: int = 0
    epoch: int = 0
    existing_owner: str = ""
    limit: int = 0
    opens_at_ms: int = 0
    limited_by: str = ""
    """RATE_LIMITED: "user" or "address"."""
    retry_after_ms: int = 0


@dataclass(frozen=True)
class ClaimAttempt:
    """One tap on "claim": the claim, and the client address its rate limit counts
    (None: the address is exempt from the per-address limit)."""

    claim: ClaimCoupon
    address: str | None = None


@dataclass(frozen=True)
class PendingClaim:
    """A claim Redis granted, waiting to be made durable."""

    merchant_id: str
    event: CouponClaimed
    epoch: int
    context: MessageContext | None = None


@dataclass(frozen=True)
class DurableClaim:
    coupon_id: str
    owner_id: str


@dataclass
class ClaimSnapshot:
    """Redis's view of a template's claims."""

    exists: bool = False
    epoch: int = 0
    remaining: int = 0
    users: dict[str, int] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    """claim id -> owner."""


class CouponStock(Protocol):
    """The deciding copy of coupon quotas (Redis): atomic, fast, rebuildable from the store."""

    async def claim_many(
        self, attempts: Sequence[ClaimAttempt], now_ms: int
    ) -> list[ClaimDecision]:
        """Decide many claims in one round trip, each atomically (the buyer's and the
        address's claim rate limits, window, per-user limit, quota, idempotent on the
        claim id)."""
        ...

    async def unclaim(self, merchant_id: str, template_id: str, claim_id: str, epoch: int) -> None:
        """Give back a claim that never became durable (only one decided at ``epoch``)."""
        ...

    async def exists(self, merchant_id: str, template_id: str) -> bool: ...

    async def load(
        self, template: TemplateDefinition, epoch: int, claims: Sequence[DurableClaim]
    ) -> None:
        """Replace the template's state with the one the store implies (a rebuild)."""
        ...

    async def close(self, merchant_id: str, template_id: str) -> None:
        """No more claims (the drop was stopped)."""
        ...

    async def snapshot(self, merchant_id: str, template_id: str) -> ClaimSnapshot: ...

    async def decided_before(
        self, merchant_id: str, template_id: str, before_ms: int
    ) -> list[tuple[str, int]]:
        """Claims Redis granted before ``before_ms`` (claim id, epoch); those loaded by a
        rebuild are durable by definition and not listed."""
        ...


class LockedTemplate(Protocol):
    """A template under its row lock (what a rebuild works under)."""

    template: TemplateDefinition

    def bump_epoch(self) -> int: ...

    async def claims(self) -> list[DurableClaim]: ...


class CouponRecords(Protocol):
    """The durable record of templates and coupons: events and the rows they imply."""

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    async def create_template(
        self, merchant_id: str, event: CouponTemplateCreated
    ) -> TemplateDefinition:
        """Record a new template; the same definition again returns it (idempotent),
        another one under the same id is TemplateExistsError."""
        ...

    async def template(self, merchant_id: str, template_id: str) -> TemplateDefinition: ...

    async def templates(
        self, merchant_id: str, template_ids: Sequence[str]
    ) -> dict[str, TemplateDefinition]: ...

    async def list_templates(self, merchant_id: str) -> list[TemplateDefinition]: ...

    async def stop_template(self, merchant_id: str, template_id: str) -> TemplateDefinition: ...

    async def templates_claimable_since(self, since: datetime) -> list[tuple[str, str]]:
        """(merchant, template) of the drops whose claim window ends after ``since``."""
        ...

    def locked_template(
        self, merchant_id: str, template_id: str
    ) -> AbstractAsyncContextManager[LockedTemplate]: ...

    @property
    def group_commits(self) -> int:
        """How many record_claims calls may run at once."""
        ...

    async def record_claims(self, pending: Sequence[PendingClaim]) -> list[BaseException | None]:
        """Group commit: many claims, one transaction; per claim None when durable, or why
        it was refused (StaleEpochError, ClaimConflictError, TemplateNotFoundError)."""
        ...

    async def coupons(
        self,
        merchant_id: str,
        coupon_ids: Sequence[str],
        *,
        conn: Connection | None = None,
    ) -> dict[str, HeldCoupon]:
        """The coupons found; with ``conn``, locked in its transaction."""
        ...

    async def coupons_of_owner(
        self, merchant_id: str, owner_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[HeldCoupon]:
        """The owner's coupons, oldest claim first; ``limit`` None: all of them."""
        ...

    async def order_holds_coupons(self, merchant_id: str, order_id: str) -> bool:
        """Whether any coupon is locked or redeemed by the order (read without locking)."""
        ...

    async def coupons_of_order(
        self, conn: Connection, merchant_id: str, order_id: str
    ) -> list[HeldCoupon]:
        """The coupons an order locked or redeemed, locked in ``conn``'s transaction."""
        ...

    async def record(
        self, conn: Connection, merchant_id: str, changes: Sequence[tuple[HeldCoupon, CouponEvent]]
    ) -> None:
        """Append each coupon's event and update its row, in ``conn``'s transaction."""
        ...


class InventorySales(Protocol):
    """The inventory service's flash sales: a campaign's stock is the sale of its id."""

    async def schedule_sale(self, merchant_id: str, campaign: CampaignScheduled) -> None:
        """Allocate the campaign's units to a sale of the campaign's id, open from
        ``stock_opens_at`` to ``ends_at``. Idempotent on the id."""
        ...

    async def end_sale(self, merchant_id: str, sale_id: str) -> None:
        """Close the sale and return its unsold units (idempotent)."""
        ...
