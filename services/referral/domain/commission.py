"""A referred order: its attribution and the life of its commission.

pending (accrued on payment) -> released (available) at the end of the return window,
unless the order was refunded in full; every refund, before or after release, reverses the
commission in proportion to the refunded share of the order's total (cumulatively, so
rounding never reverses more than was accrued, and a full refund reverses it all). A
flagged order (device shared by sharer and buyer) is accrued but released only after a
merchant approves it; a rejection reverses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from services.kit.errors import NotFoundError, PreconditionFailedError
from services.kit.tenancy import validate_merchant_id
from services.referral.domain.attribution import OrderAttributed, TouchSource
from services.referral.domain.ledger import Bucket
from services.referral.domain.programme import CommissionShare, PricedLine


class ReferredOrderNotFoundError(NotFoundError):
    pass


class NotUnderReviewError(PreconditionFailedError):
    pass


class OrderStage(StrEnum):
    PLACED = "placed"
    CANCELLED = "cancelled"
    NO_COMMISSION = "no_commission"
    PENDING = "pending"
    RELEASED = "released"
    REVERSED = "reversed"


class Review(StrEnum):
    NONE = ""
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Accrual:
    beneficiary_id: str
    level: int
    amount_minor: int
    reversed_minor: int = 0

    @property
    def outstanding(self) -> int:
        return self.amount_minor - self.reversed_minor


@dataclass(frozen=True)
class CommissionAccrued:
    order_id: str
    commissions: tuple[CommissionShare, ...]
    currency: str
    release_at: datetime
    held_for_review: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class CommissionReleased:
    order_id: str
    commissions: tuple[CommissionShare, ...]
    currency: str


@dataclass(frozen=True)
class CommissionReversed:
    order_id: str
    refund_id: str
    commissions: tuple[CommissionShare, ...]
    currency: str
    from_bucket: Bucket
    refunded_minor: int
    order_total_minor: int


@dataclass(frozen=True)
class CommissionReviewed:
    order_id: str
    approved: bool
    reviewer_id: str


REVIEW_REJECTED_REFUND_ID = "review-rejected"


@dataclass(frozen=True)
class ReferredOrder:
    merchant_id: str
    order_id: str
    buyer_id: str
    sharer_id: str
    code: str
    room_id: str
    source: TouchSource
    total_minor: int
    currency: str
    level_two_id: str
    flagged: bool
    flag_reason: str
    lines: tuple[PricedLine, ...]
    stage: OrderStage = OrderStage.PLACED
    accruals: tuple[Accrual, ...] = ()
    refunded_minor: int = 0
    review: Review = Review.NONE
    release_due: bool = False
    paid_at: datetime | None = None
    version: int = 0
    """The stream's version when loaded: the store appends new events after it."""

    @staticmethod
    def stream_id(merchant_id: str, order_id: str) -> str:
        return f"referral:{validate_merchant_id(merchant_id)}:{order_id}"

    @classmethod
    def attributed(
        cls, merchant_id: str, event: OrderAttributed, lines: Sequence[PricedLine]
    ) -> ReferredOrder:
        return cls(
            merchant_id=merchant_id,
            order_id=event.order_id,
            buyer_id=event.buyer_id,
            sharer_id=event.sharer_id,
            code=event.code,
            room_id=event.room_id,
            source=event.source,
            total_minor=event.total_minor,
            currency=event.currency,
            level_two_id=event.level_two_id,
            flagged=event.flagged,
            flag_reason=event.flag_reason,
            lines=tuple(lines),
        )

    @property
    def outstanding(self) -> int:
        return sum(a.outstanding for a in self.accruals)

    def cancel(self) -> ReferredOrder:
        """An unpaid order was cancelled: it will never earn anything."""
        if self.stage is OrderStage.PLACED:
            return replace(self, stage=OrderStage.CANCELLED)
        return self

    def accrue(
        self,
        shares: Sequence[CommissionShare],
        notes: Sequence[str],
        paid_at: datetime,
        release_at: datetime,
    ) -> tuple[ReferredOrder, CommissionAccrued | None]:
        """Record the payment; the commission event when there is one to accrue."""
        if self.stage is not OrderStage.PLACED:
            return self, None
        if not shares:
            return replace(self, stage=OrderStage.NO_COMMISSION, paid_at=paid_at), None
        event = CommissionAccrued(
            self.order_id, tuple(shares), self.currency, release_at, self.flagged, tuple(notes)
        )
        return self.apply_accrued(event, paid_at), event

    def apply_accrued(self, event: CommissionAccrued, paid_at: datetime) -> ReferredOrder:
        return replace(
            self,
            stage=OrderStage.PENDING,
            paid_at=paid_at,
            accruals=tuple(
                Accrual(s.beneficiary_id, s.level, s.amount_minor) for s in event.commissions
            ),
            review=Review.WAITING if event.held_for_review else Review.NONE,
        )

    def refund(
        self, refund_id: str, amount_minor: int, full: bool
    ) -> tuple[ReferredOrder, CommissionReversed | None]:
        """Reverse the commission in proportion to what has been refunded so far."""
        refunded = min(self.total_minor, self.refunded_minor + max(0, amount_minor))
        whole = full or refunded >= self.total_minor or self.total_minor <= 0
        after = replace(self, refunded_minor=refunded)
        if self.stage not in (OrderStage.PENDING, OrderStage.RELEASED):
            return after, None
        taken: list[CommissionShare] = []
        accruals: list[Accrual] = []
        for accrual in self.accruals:
            target = (
                accrual.amount_minor
                if whole
                else accrual.amount_minor * refunded // self.total_minor
            )
            delta = max(0, target - accrual.reversed_minor)
            if delta:
                taken.append(CommissionShare(accrual.beneficiary_id, accrual.level, delta))
            accruals.append(replace(accrual, reversed_minor=accrual.reversed_minor + delta))
        if not taken:
            return after, None
        bucket = Bucket.AVAILABLE if self.stage is OrderStage.RELEASED else Bucket.PENDING
        event = CommissionReversed(
            self.order_id,
            refund_id,
            tuple(taken),
            self.currency,
            bucket,
            refunded,
            self.total_minor,
        )
        return self._reversed(after, tuple(accruals)), event

    def _reversed(self, after: ReferredOrder, accruals: tuple[Accrual, ...]) -> ReferredOrder:
        pending_all_gone = self.stage is OrderStage.PENDING and not any(
            a.outstanding for a in accruals
        )
        return replace(
            after,
            accruals=accruals,
            stage=OrderStage.REVERSED if pending_all_gone else self.stage,
        )

    def release(self) -> tuple[ReferredOrder, CommissionReleased | None]:
        """The return window has passed: what is left of the commission becomes available,
        unless it waits for a review (then it is released when approved)."""
        if self.stage is not OrderStage.PENDING:
            return self, None
        due = replace(self, release_due=True)
        if self.review in (Review.WAITING, Review.REJECTED):
            return due, None
        shares = tuple(
            CommissionShare(a.beneficiary_id, a.level, a.outstanding)
            for a in self.accruals
            if a.outstanding > 0
        )
        if not shares:
            return replace(due, stage=OrderStage.REVERSED), None
        event = CommissionReleased(self.order_id, shares, self.currency)
        return replace(due, stage=OrderStage.RELEASED), event

    def reviewed(
        self, approved: bool, reviewer_id: str
    ) -> tuple[ReferredOrder, list[CommissionReviewed | CommissionReleased | CommissionReversed]]:
        if self.review is not Review.WAITING or self.stage is not OrderStage.PENDING:
            raise NotUnderReviewError(f"the commission of order {self.order_id} is not in review")
        event = CommissionReviewed(self.order_id, approved, reviewer_id)
        order = replace(
            self,
            review=Review.APPROVED if approved else Review.REJECTED,
        )
        events: list[CommissionReviewed | CommissionReleased | CommissionReversed] = [event]
        if approved:
            if self.release_due:
                order, released = order.release()
                if released is not None:
                    events.append(released)
            return order, events
        order, reversed_ = order.refund(REVIEW_REJECTED_REFUND_ID, order.total_minor, full=True)
        order = replace(order, refunded_minor=self.refunded_minor)
        if reversed_ is not None:
            events.append(reversed_)
        return order, events
