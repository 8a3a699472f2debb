"""Attribution: which sharer a view and an order are credited to.

Rules: last touch wins within the window before the order; the order's own share code is a
touch at the moment it was placed (so it wins over every earlier one); a touch by the buyer's
own code (self-referral) never counts; an order is attributed at most once. A user's first
sharer becomes the user's inviter (level 2 upline), unless that would make a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.kit.tenancy import validate_merchant_id

MAX_UPLINE_DEPTH = 8
"""How far up the invitation chain a cycle is looked for."""


class TouchSource(StrEnum):
    ORDER_CODE = "order_code"
    LAST_TOUCH = "last_touch"


@dataclass(frozen=True)
class Touch:
    """A viewer arrived through a sharer's code."""

    sharer_id: str
    code: str
    room_id: str
    at: datetime
    device_id: str = ""


@dataclass(frozen=True)
class ViewAttributed:
    viewer_id: str
    sharer_id: str
    code: str
    room_id: str
    entry: str
    channel: str
    joined_at: datetime


@dataclass(frozen=True)
class InviteeBound:
    invitee_id: str
    inviter_id: str
    code: str


@dataclass(frozen=True)
class OrderAttributed:
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


def visit_stream_id(merchant_id: str, joined_event_id: str) -> str:
    """One stream per ViewerJoined: views never contend for a stream's version."""
    return f"visit:{validate_merchant_id(merchant_id)}:{joined_event_id}"


def choose_touch(
    buyer_id: str,
    placed_at: datetime,
    window: timedelta,
    order_touch: Touch | None,
    earlier: Iterable[Touch],
) -> tuple[Touch, TouchSource] | None:
    """The touch an order is credited to, or None (no touch in the window, or only the
    buyer's own)."""
    if order_touch is not None and order_touch.sharer_id != buyer_id:
        return order_touch, TouchSource.ORDER_CODE
    eligible = [
        t for t in earlier if t.sharer_id != buyer_id and placed_at - window <= t.at <= placed_at
    ]
    if not eligible:
        return None
    return max(eligible, key=lambda t: t.at), TouchSource.LAST_TOUCH


def would_cycle(invitee_id: str, inviter_id: str, inviter_upline: Sequence[str]) -> bool:
    """Binding ``invitee`` under ``inviter`` closes a loop if the invitee is the inviter or
    already above the inviter (A invites B, B would invite A)."""
    return invitee_id == inviter_id or invitee_id in inviter_upline


def level_two_of(buyer_id: str, sharer_upline: Sequence[str]) -> str:
    """The sharer's inviter, who earns level 2, unless the buyer is that inviter."""
    if not sharer_upline or sharer_upline[0] == buyer_id:
        return ""
    return sharer_upline[0]


def is_cycle_order(buyer_id: str, sharer_id: str, sharer_upline: Sequence[str]) -> bool:
    """No commission on one's own order, nor on an order of someone above the sharer in the
    invitation chain (A invited B; B shares; A buys)."""
    return buyer_id == sharer_id or buyer_id in sharer_upline
