"""Group buys (拼团): an offer sells a SKU at a group price to groups of N paid members.

A buyer opens a group of an offer that is running (they lead it and are its first member);
others join it while it is open, before its deadline, up to N members. A member counts
when their order is paid (before the deadline). The N-th paid member completes the group;
a group short of N at its deadline fails, listing its members' orders so that the order
service cancels and refunds them. Completion and failure are final and each happens at most
once; a member who leaves a completed group (a refund) leaves it completed. A member whose
unpaid order is cancelled leaves an open group and frees their place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
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

MAX_GROUP_SIZE = 100
MIN_GROUP_SIZE = 2
MAX_GROUP_SECONDS = 7 * 24 * 3600
MIN_GROUP_SECONDS = 60


class InvalidGroupOfferError(InvalidArgumentError):
    pass


class GroupOfferNotFoundError(NotFoundError):
    pass


class GroupOfferExistsError(AlreadyExistsError):
    pass


class GroupNotFoundError(NotFoundError):
    pass


class GroupExistsError(AlreadyExistsError):
    pass


class GroupClosedError(PreconditionFailedError):
    """The group is not open any more (completed, failed, or past its deadline), or its
    offer is not running."""


class GroupFullError(PreconditionFailedError):
    pass


class AlreadyMemberError(AlreadyExistsError):
    pass


class NotMemberError(PreconditionFailedError):
    pass


class GroupState(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    FAILED = "failed"


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupOfferCreated:
    offer_id: str
    sku_id: str
    group_price_minor: int
    currency: str
    required_members: int
    duration_seconds: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class GroupOpened:
    group_id: str
    offer_id: str
    leader_id: str
    required_members: int
    deadline: datetime
    sku_id: str


@dataclass(frozen=True)
class GroupMemberAdded:
    group_id: str
    member_id: str


@dataclass(frozen=True)
class GroupOrderPlaced:
    group_id: str
    member_id: str
    order_id: str


@dataclass(frozen=True)
class GroupJoined:
    """A member counts: their order was paid."""

    group_id: str
    member_id: str
    order_id: str
    paid_members: int


@dataclass(frozen=True)
class GroupMemberLeft:
    group_id: str
    member_id: str
    order_id: str
    paid_members: int
    reason: str


@dataclass(frozen=True)
class GroupCompleted:
    group_id: str
    order_ids: tuple[str, ...]


@dataclass(frozen=True)
class GroupFailed:
    group_id: str
    order_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class GroupPaymentRejected:
    group_id: str
    order_id: str
    reason: str


GroupEvent = (
    GroupOpened
    | GroupMemberAdded
    | GroupOrderPlaced
    | GroupJoined
    | GroupMemberLeft
    | GroupCompleted
    | GroupFailed
    | GroupPaymentRejected
)


# -- offers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateGroupOffer:
    merchant_id: str
    offer_id: str
    sku_id: str
    group_price: Money
    required_members: int
    duration_seconds: int
    starts_at: datetime
    ends_at: datetime

    def event(self) -> GroupOfferCreated:
        validate_merchant_id(self.merchant_id)
        validate_id(self.offer_id, "group offer id")
        validate_id(self.sku_id, "SKU id")
        if self.group_price.amount == 0:
            raise InvalidGroupOfferError("a group price must be above zero")
        if not MIN_GROUP_SIZE <= self.required_members <= MAX_GROUP_SIZE:
            raise InvalidGroupOfferError(
                f"a group has {MIN_GROUP_SIZE} to {MAX_GROUP_SIZE} members"
            )
        if not MIN_GROUP_SECONDS <= self.duration_seconds <= MAX_GROUP_SECONDS:
            raise InvalidGroupOfferError(
                f"a group lasts {MIN_GROUP_SECONDS} to {MAX_GROUP_SECONDS} seconds"
            )
        validate_window(self.starts_at, self.ends_at, f"group offer {self.offer_id}")
        return GroupOfferCreated(
            offer_id=self.offer_id,
            sku_id=self.sku_id,
            group_price_minor=self.group_price.amount,
            currency=self.group_price.currency,
            required_members=self.required_members,
            duration_seconds=self.duration_seconds,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
        )


@dataclass(frozen=True)
class GroupOffer:
    merchant_id: str
    created: GroupOfferCreated

    @property
    def group_price(self) -> Money:
        return Money(self.created.group_price_minor, self.created.currency)

    def open_group(self, group_id: str, leader_id: str, now: datetime) -> GroupOpened:
        validate_id(group_id, "group id")
        validate_id(leader_id, "buyer id")
        c = self.created
        if not c.starts_at <= now < c.ends_at:
            raise GroupClosedError(f"group offer {c.offer_id} is not running")
        deadline = min(now + timedelta(seconds=c.duration_seconds), c.ends_at)
        return GroupOpened(group_id, c.offer_id, leader_id, c.required_members, deadline, c.sku_id)


# -- groups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    member_id: str
    order_id: str | None = None
    paid: bool = False
    left: bool = False


@dataclass(frozen=True)
class Group:
    merchant_id: str
    group_id: str
    offer_id: str
    sku_id: str
    leader_id: str
    required_members: int
    deadline: datetime
    state: GroupState
    members: tuple[Member, ...]
    version: int
    failed_orders: tuple[str, ...] = ()
    """The orders a failure listed (the order service cancels and refunds each)."""

    @classmethod
    def opened(cls, merchant_id: str, event: GroupOpened) -> Group:
        return cls(
            merchant_id=merchant_id,
            group_id=event.group_id,
            offer_id=event.offer_id,
            sku_id=event.sku_id,
            leader_id=event.leader_id,
            required_members=event.required_members,
            deadline=event.deadline,
            state=GroupState.OPEN,
            members=(Member(event.leader_id),),
            version=1,
        )

    @property
    def paid_members(self) -> int:
        return sum(1 for m in self.members if m.paid and not m.left)

    def member(self, member_id: str) -> Member | None:
        for member in self.members:
            if member.member_id == member_id and not member.left:
                return member
        return None

    def open_at(self, now: datetime) -> bool:
        return self.state is GroupState.OPEN and now < self.deadline

    def check_member(self, buyer_id: str, now: datetime) -> None:
        """The buyer may order at the group price: an open group they are a member of."""
        if not self.open_at(now):
            raise GroupClosedError(f"group {self.group_id} is closed")
        if self.member(buyer_id) is None:
            raise NotMemberError(f"the buyer is not a member of group {self.group_id}")

    def join(self, member_id: str, now: datetime) -> GroupMemberAdded:
        validate_id(member_id, "buyer id")
        if self.member(member_id) is not None:
            raise AlreadyMemberError(f"the buyer is a member of group {self.group_id} already")
        if not self.open_at(now):
            raise GroupClosedError(f"group {self.group_id} is closed")
        if sum(1 for m in self.members if not m.left) >= self.required_members:
            raise GroupFullError(f"group {self.group_id} is full")
        return GroupMemberAdded(self.group_id, member_id)

    def order_placed(self, member_id: str, order_id: str) -> GroupOrderPlaced | None:
        """None: not a member of an open group, or the order is known already."""
        member = self.member(member_id)
        if self.state is not GroupState.OPEN or member is None or member.order_id == order_id:
            return None
        return GroupOrderPlaced(self.group_id, member_id, order_id)

    def paid(self, member_id: str, order_id: str, paid_at: datetime) -> list[GroupEvent]:
        """A member's order was paid at ``paid_at``: they count if it was in time; the N-th
        completes the group. Nothing for a repeat, a non-member, a completed group or a late
        payment (the deadline's failure lists the order for a refund); a payment for a group
        that failed without listing the order fails it for that order too."""
        if self.state is GroupState.FAILED and order_id not in self.failed_orders:
            # Paid for a group that had already failed without listing this order (its
            # OrderPlaced came after the failure): list it now, so it is refunded too.
            return [GroupPaymentRejected(self.group_id, order_id, "paid after the group failed")]
        member = self.member(member_id)
        if member is None or member.paid or not self.open_at(paid_at):
            return []
        if self.state is not GroupState.OPEN:
            return []
        paid = self.paid_members + 1
        events: list[GroupEvent] = [GroupJoined(self.group_id, member_id, order_id, paid)]
        if paid >= self.required_members:
            orders = [m.order_id for m in self.members if m.paid and not m.left and m.order_id]
            events.append(GroupCompleted(self.group_id, tuple([*orders, order_id])))
        return events

    def expire(self, now: datetime) -> GroupFailed | None:
        """The deadline passed: an open group fails. None when it completed (or failed)."""
        if self.state is not GroupState.OPEN or now < self.deadline:
            return None
        orders = tuple(m.order_id for m in self.members if m.order_id and not m.left)
        return GroupFailed(
            self.group_id,
            orders,
            f"{self.paid_members} of {self.required_members} members paid by the deadline",
        )

    def leave(self, member_id: str, order_id: str, reason: str) -> GroupMemberLeft | None:
        """The member's order was cancelled or refunded. None: not this member's order, or
        the group failed (its orders are being cancelled anyway)."""
        member = self.member(member_id)
        if member is None or member.order_id != order_id or self.state is GroupState.FAILED:
            return None
        paid = self.paid_members - (1 if member.paid else 0)
        return GroupMemberLeft(self.group_id, member_id, order_id, paid, reason)

    def after(self, events: list[GroupEvent]) -> Group:
        group = self
        for event in events:
            group = group._apply(event)
        return group

    def _apply(self, event: GroupEvent) -> Group:
        version = self.version + 1
        match event:
            case GroupMemberAdded():
                return replace(
                    self, members=(*self.members, Member(event.member_id)), version=version
                )
            case GroupOrderPlaced():
                return self._with_member(event.member_id, version, order_id=event.order_id)
            case GroupJoined():
                return self._with_member(
                    event.member_id, version, order_id=event.order_id, paid=True
                )
            case GroupMemberLeft():
                return self._with_member(event.member_id, version, left=True)
            case GroupCompleted():
                return replace(self, state=GroupState.COMPLETED, version=version)
            case GroupFailed():
                failed = (*self.failed_orders, *event.order_ids)
                return replace(self, state=GroupState.FAILED, failed_orders=failed, version=version)
            case GroupPaymentRejected():
                failed = (*self.failed_orders, event.order_id)
                return replace(self, failed_orders=failed, version=version)
        return replace(self, version=version)

    def _with_member(self, member_id: str, version: int, **changes: object) -> Group:
        members = tuple(
            replace(m, **changes) if m.member_id == member_id and not m.left else m  # type: ignore[arg-type]
            for m in self.members
        )
        return replace(self, members=members, version=version)
