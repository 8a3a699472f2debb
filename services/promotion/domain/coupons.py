"""Coupon templates and the life of a coupon: claimed, locked for a checkout, redeemed on
payment, released on cancel, restored (or not) on a full refund by the template's rule.

A template says what its coupons are worth and where (the quote's ``CouponTemplate``), how
many may be claimed in all (``quota``) and by one buyer (``per_user_limit``), when they may
be claimed, and whether a fully refunded order gives its coupons back. A coupon's id is the
buyer's claim id, so a claim sent twice is one coupon.

A coupon is *available* when claimed and not locked, or locked by an order whose lock has
expired (the checkout was abandoned): such a coupon may be locked by another order. Locks,
redemptions, releases and restorations are idempotent for the same order.
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
from services.promotion.domain.quote import Coupon, CouponKind, CouponScope, CouponTemplate

MAX_QUOTA = 10_000_000
MAX_PER_USER_LIMIT = 100
MAX_TEMPLATE_SKUS = 200


class InvalidCouponDefinitionError(InvalidArgumentError):
    pass


class TemplateNotFoundError(NotFoundError):
    pass


class TemplateExistsError(AlreadyExistsError):
    pass


class CouponNotFoundError(NotFoundError):
    pass


class ClaimConflictError(AlreadyExistsError):
    """The claim id is another buyer's or another template's coupon."""


class ClaimNotOpenError(PreconditionFailedError):
    """Outside the template's claim window, or the drop was stopped."""


class ClaimLimitReachedError(PreconditionFailedError):
    pass


class CouponUnusableError(PreconditionFailedError):
    """The coupon cannot be locked or redeemed for this order (another buyer's, used,
    locked by another order)."""


class CouponState(StrEnum):
    CLAIMED = "claimed"
    LOCKED = "locked"
    REDEEMED = "redeemed"


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponTemplateCreated:
    template_id: str
    kind: str
    room_id: str
    sku_ids: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    currency: str
    amount_minor: int | None
    percent_bps: int | None
    cap_minor: int | None
    threshold_minor: int | None
    stackable: bool
    quota: int
    per_user_limit: int
    restore_on_refund: bool
    claim_starts_at: datetime
    claim_ends_at: datetime


@dataclass(frozen=True)
class CouponTemplateStopped:
    template_id: str


@dataclass(frozen=True)
class CouponClaimed:
    coupon_id: str
    template_id: str
    owner_id: str


@dataclass(frozen=True)
class CouponLocked:
    coupon_id: str
    order_id: str
    locked_until: datetime


@dataclass(frozen=True)
class CouponReleased:
    coupon_id: str
    order_id: str
    reason: str


@dataclass(frozen=True)
class CouponRedeemed:
    coupon_id: str
    order_id: str


@dataclass(frozen=True)
class CouponRestored:
    coupon_id: str
    order_id: str


CouponEvent = CouponLocked | CouponReleased | CouponRedeemed | CouponRestored


# -- templates ---------------------------------------------------------------------------


def _money(amount: int | None, currency: str) -> Money | None:
    return None if amount is None else Money(amount, currency)


@dataclass(frozen=True)
class TemplateDefinition:
    """A template as recorded; ``terms()`` is what the quote knows of it."""

    merchant_id: str
    created: CouponTemplateCreated
    stopped: bool = False
    claimed: int = 0
    version: int = 1

    @property
    def template_id(self) -> str:
        return self.created.template_id

    def terms(self) -> CouponTemplate:
        c = self.created
        return CouponTemplate(
            template_id=c.template_id,
            kind=CouponKind(c.kind),
            scope=CouponScope(
                merchant_id=self.merchant_id,
                room_id=c.room_id or None,
                sku_ids=frozenset(c.sku_ids),
            ),
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            amount=_money(c.amount_minor, c.currency),
            percent_bps=c.percent_bps,
            cap=_money(c.cap_minor, c.currency),
            threshold=_money(c.threshold_minor, c.currency),
            stackable=c.stackable,
        )

    def claimable_at(self, at: datetime) -> bool:
        c = self.created
        return not self.stopped and c.claim_starts_at <= at < c.claim_ends_at


@dataclass(frozen=True)
class CreateCouponTemplate:
    merchant_id: str
    template: CouponTemplate
    quota: int
    per_user_limit: int = 1
    restore_on_refund: bool = False
    claim_starts_at: datetime | None = None
    """None: from the template's valid_from."""
    claim_ends_at: datetime | None = None
    """None: until the template's valid_until."""

    def event(self) -> CouponTemplateCreated:
        validate_merchant_id(self.merchant_id)
        t = self.template
        if t.scope.merchant_id != self.merchant_id:
            raise InvalidCouponDefinitionError("a template is scoped to its own merchant")
        if len(t.scope.sku_ids) > MAX_TEMPLATE_SKUS:
            raise InvalidCouponDefinitionError(
                f"a coupon template names at most {MAX_TEMPLATE_SKUS} SKUs"
            )
        if not 1 <= self.quota <= MAX_QUOTA:
            raise InvalidCouponDefinitionError(f"a quota is 1 to {MAX_QUOTA}")
        if not 1 <= self.per_user_limit <= MAX_PER_USER_LIMIT:
            raise InvalidCouponDefinitionError(f"a per-user limit is 1 to {MAX_PER_USER_LIMIT}")
        starts = self.claim_starts_at or t.valid_from
        ends = self.claim_ends_at or t.valid_until
        for moment in (starts, ends):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise InvalidCouponDefinitionError("claim times must carry a time zone")
        if ends <= starts:
            raise InvalidCouponDefinitionError("the claim window must end after it starts")
        if ends > t.valid_until:
            raise InvalidCouponDefinitionError("coupons cannot be claimed after they expire")
        money = t.money()
        return CouponTemplateCreated(
            template_id=t.template_id,
            kind=t.kind.value,
            room_id=t.scope.room_id or "",
            sku_ids=tuple(sorted(t.scope.sku_ids)),
            valid_from=t.valid_from,
            valid_until=t.valid_until,
            currency=money[0].currency if money else "",
            amount_minor=None if t.amount is None else t.amount.amount,
            percent_bps=t.percent_bps,
            cap_minor=None if t.cap is None else t.cap.amount,
            threshold_minor=None if t.threshold is None else t.threshold.amount,
            stackable=t.stackable,
            quota=self.quota,
            per_user_limit=self.per_user_limit,
            restore_on_refund=self.restore_on_refund,
            claim_starts_at=starts,
            claim_ends_at=ends,
        )


@dataclass(frozen=True)
class ClaimCoupon:
    merchant_id: str
    template_id: str
    user_id: str
    claim_id: str
    """Chosen by the buyer's client, once per tap: the coupon's id, and what makes the claim
    idempotent."""

    def validated(self) -> ClaimCoupon:
        validate_merchant_id(self.merchant_id)
        validate_id(self.template_id, "coupon template id")
        validate_id(self.user_id, "user id")
        validate_id(self.claim_id, "claim id")
        return self


# -- coupons -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldCoupon:
    """A claimed coupon as recorded."""

    merchant_id: str
    coupon_id: str
    template_id: str
    owner_id: str
    state: CouponState
    order_id: str | None
    locked_until: datetime | None
    version: int

    def available(self, now: datetime) -> bool:
        if self.state is CouponState.CLAIMED:
            return True
        return (
            self.state is CouponState.LOCKED
            and self.locked_until is not None
            and self.locked_until <= now
        )

    def for_quote(self, template: TemplateDefinition) -> Coupon:
        return Coupon(self.coupon_id, self.owner_id, template.terms())

    def check_usable_by(self, buyer_id: str, order_id: str | None, now: datetime) -> None:
        """Refuse a coupon the buyer cannot bring to this order (``order_id`` None: a price
        enquiry, which no lock stands in the way of)."""
        if self.owner_id != buyer_id:
            raise CouponUnusableError(f"coupon {self.coupon_id} is not the buyer's")
        if self.state is CouponState.REDEEMED:
            raise CouponUnusableError(f"coupon {self.coupon_id} has been used")
        if order_id is None or self.order_id == order_id or self.available(now):
            return
        raise CouponUnusableError(f"coupon {self.coupon_id} is locked by another order")

    def lock(self, buyer_id: str, order_id: str, until: datetime, now: datetime) -> CouponLocked:
        """Lock for ``order_id``; the same order again gets the lock it has (idempotent)."""
        self.check_usable_by(buyer_id, order_id, now)
        if (
            self.state is CouponState.LOCKED
            and self.order_id == order_id
            and self.locked_until is not None
            and now < self.locked_until
        ):
            return CouponLocked(self.coupon_id, order_id, self.locked_until)
        return CouponLocked(self.coupon_id, order_id, until)

    def release(self, order_id: str, reason: str) -> CouponReleased | None:
        """None: the order holds no lock on it (released already, redeemed, relocked)."""
        if self.state is CouponState.LOCKED and self.order_id == order_id:
            return CouponReleased(self.coupon_id, order_id, reason)
        return None

    def redeem(self, order_id: str) -> CouponRedeemed | None:
        """The order was paid with the coupon. None: redeemed by it already."""
        if self.state is CouponState.REDEEMED:
            if self.order_id == order_id:
                return None
            raise CouponUnusableError(f"coupon {self.coupon_id} was used by order {self.order_id}")
        if self.state is CouponState.LOCKED and self.order_id != order_id:
            raise CouponUnusableError(f"coupon {self.coupon_id} is locked by order {self.order_id}")
        return CouponRedeemed(self.coupon_id, order_id)

    def restore(self, order_id: str, restore_on_refund: bool) -> CouponRestored | None:
        """A full refund of the order that used it: usable again if the template says so."""
        if restore_on_refund and self.state is CouponState.REDEEMED and self.order_id == order_id:
            return CouponRestored(self.coupon_id, order_id)
        return None

    def after(self, event: CouponEvent) -> HeldCoupon:
        """The coupon once ``event`` happened to it."""
        version = self.version + 1
        match event:
            case CouponLocked():
                return replace(
                    self,
                    state=CouponState.LOCKED,
                    order_id=event.order_id,
                    locked_until=event.locked_until,
                    version=version,
                )
            case CouponRedeemed():
                return replace(
                    self,
                    state=CouponState.REDEEMED,
                    order_id=event.order_id,
                    locked_until=None,
                    version=version,
                )
            case CouponReleased() | CouponRestored():
                return replace(
                    self,
                    state=CouponState.CLAIMED,
                    order_id=None,
                    locked_until=None,
                    version=version,
                )
