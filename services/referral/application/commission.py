"""Commission on referred orders: accrued on payment, released after the return window,
reversed on refunds; red packets for invited friends' first purchases; leaderboards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.kit.errors import UnavailableError
from services.kit.logging import get_logger
from services.referral.application.ports import Books, Leaderboards, ReferralBook
from services.referral.domain import ledger
from services.referral.domain.attribution import MAX_UPLINE_DEPTH, is_cycle_order
from services.referral.domain.commission import (
    CommissionAccrued,
    CommissionReleased,
    CommissionReversed,
    ReferredOrder,
    ReferredOrderNotFoundError,
)
from services.referral.domain.events import ReferralEvent
from services.referral.domain.programme import CommissionShare
from services.referral.domain.red_packets import RedPacketCampaign, RedPacketGranted

log = get_logger(__name__)

CYCLE = "no commission: the buyer is the sharer or above the sharer in the invitation chain"
NO_PROGRAMME = "no commission: the merchant has no distribution programme"


@dataclass(frozen=True)
class RecordPayment:
    merchant_id: str
    order_id: str
    buyer_id: str
    amount_minor: int
    currency: str
    paid_at: datetime


@dataclass(frozen=True)
class RecordRefund:
    merchant_id: str
    order_id: str
    refund_id: str
    amount_minor: int
    full: bool


def room_board(room_id: str) -> str:
    return f"room:{room_id}"


def campaign_board(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def _boards(order: ReferredOrder, campaigns: Sequence[RedPacketCampaign]) -> list[str]:
    boards = [campaign_board(c.campaign_id) for c in campaigns]
    return [room_board(order.room_id), *boards] if order.room_id else boards


async def _bump_boards(
    boards: Leaderboards,
    order: ReferredOrder,
    change_id: str,
    campaigns: Sequence[RedPacketCampaign],
    gmv_minor: int,
) -> None:
    """Leaderboards are a derived view: Redis being down must not hold back (or dead-letter)
    the money. The change is logged and the boards miss it."""
    try:
        await boards.add(
            order.merchant_id, change_id, _boards(order, campaigns), order.sharer_id, gmv_minor
        )
    except UnavailableError as error:
        log.warning("leaderboard not updated", change_id=change_id, error=error.detail)


def _pairs(shares: Sequence[CommissionShare]) -> list[tuple[str, int]]:
    return [(s.beneficiary_id, s.amount_minor) for s in shares]


async def _post_commission_event(
    book: ReferralBook, order: ReferredOrder, event: ReferralEvent
) -> None:
    """The ledger posting that goes with a commission event."""
    merchant, order_id = order.merchant_id, order.order_id
    posting: ledger.Posting | None = None
    match event:
        case CommissionAccrued():
            posting = ledger.accrual(
                f"accrual:{order_id}", merchant, event.currency, _pairs(event.commissions), order_id
            )
        case CommissionReleased():
            posting = ledger.release(
                f"release:{order_id}", event.currency, _pairs(event.commissions), order_id
            )
        case CommissionReversed():
            posting = ledger.reversal(
                f"reversal:{order_id}:{event.refund_id}",
                merchant,
                event.currency,
                _pairs(event.commissions),
                event.from_bucket,
                order_id,
            )
    if posting is not None:
        await book.post(merchant, posting)


async def _save(book: ReferralBook, order: ReferredOrder, events: Sequence[ReferralEvent]) -> None:
    for event in events:
        await _post_commission_event(book, order, event)
    await book.save_referred_order(order, events)


async def record_payment(
    command: RecordPayment, book: ReferralBook, boards: Leaderboards
) -> list[ReferralEvent]:
    """An order was paid: a red packet if it is an invited friend's first purchase; the
    commission of an attributed order accrues (pending) with its release timer."""
    merchant = command.merchant_id
    campaigns = await book.running_campaigns(merchant, command.paid_at)
    events: list[ReferralEvent] = []
    granted = await _grant_red_packet(command, book, campaigns)
    if granted is not None:
        events.append(granted)
    order = await book.referred_order(merchant, command.order_id, lock=True)
    if order is None or order.paid_at is not None:
        return events
    programme = await book.programme(merchant)
    upline = await book.upline(merchant, order.sharer_id, MAX_UPLINE_DEPTH)
    shares: list[CommissionShare] = []
    notes: list[str] = []
    if programme is None:
        notes.append(NO_PROGRAMME)
    elif is_cycle_order(order.buyer_id, order.sharer_id, upline):
        notes.append(CYCLE)
    else:
        day = command.paid_at.date()
        beneficiaries = [order.sharer_id, *([order.level_two_id] if order.level_two_id else [])]
        used = await book.accrued_on(merchant, beneficiaries, day)
        shares, notes = programme.commission(order.lines, order.sharer_id, order.level_two_id, used)
        await book.add_accrued(merchant, shares, day)
    window = timedelta(seconds=programme.return_window_seconds if programme else 0)
    release_at = command.paid_at + window
    order, accrued = order.accrue(shares, notes, command.paid_at, release_at)
    if accrued is not None:
        events.append(accrued)
        await book.schedule_release(merchant, order.order_id, release_at)
    await _save(book, order, [accrued] if accrued else [])
    await _bump_boards(boards, order, f"paid:{order.order_id}", campaigns, command.amount_minor)
    return events


async def _grant_red_packet(
    command: RecordPayment, book: ReferralBook, campaigns: Sequence[RedPacketCampaign]
) -> RedPacketGranted | None:
    merchant = command.merchant_id
    upline = await book.upline(merchant, command.buyer_id, 1)
    if not upline or not await book.first_purchase(merchant, command.buyer_id, command.order_id):
        return None
    inviter = upline[0]
    for campaign in campaigns:
        total = await book.take_from_budget(merchant, campaign.campaign_id, campaign.amount_minor)
        if total is None:
            continue
        event = RedPacketGranted(
            campaign_id=campaign.campaign_id,
            inviter_id=inviter,
            invitee_id=command.buyer_id,
            order_id=command.order_id,
            amount_minor=campaign.amount_minor,
            currency=campaign.currency,
            granted_total_minor=total,
        )
        await book.record_grant(
            merchant,
            campaign.campaign_id,
            command.order_id,
            inviter,
            command.buyer_id,
            campaign.amount_minor,
        )
        posting = ledger.red_packet(
            f"red-packet:{command.order_id}",
            merchant,
            campaign.currency,
            inviter,
            campaign.amount_minor,
            campaign.campaign_id,
        )
        if posting is not None:
            await book.post(merchant, posting)
        await book.append(f"red-packet:{merchant}:{command.order_id}", merchant, 0, [event])
        return event
    return None


async def record_refund(
    command: RecordRefund, book: ReferralBook, boards: Leaderboards
) -> CommissionReversed | None:
    order = await book.referred_order(command.merchant_id, command.order_id, lock=True)
    if order is None:
        return None
    refunded_before = order.refunded_minor
    order, reversed_ = order.refund(command.refund_id, command.amount_minor, command.full)
    await _save(book, order, [reversed_] if reversed_ else [])
    if order.paid_at is not None and order.refunded_minor > refunded_before:
        campaigns = await book.running_campaigns(command.merchant_id, order.paid_at)
        change_id = f"refund:{order.order_id}:{command.refund_id}"
        await _bump_boards(
            boards, order, change_id, campaigns, refunded_before - order.refunded_minor
        )
    return reversed_


async def record_cancellation(merchant_id: str, order_id: str, book: ReferralBook) -> None:
    order = await book.referred_order(merchant_id, order_id, lock=True)
    if order is not None:
        await book.save_referred_order(order.cancel(), [])


async def release_commission(
    merchant_id: str, order_id: str, book: ReferralBook
) -> CommissionReleased | None:
    """The return window has passed (the durable timer fired)."""
    order = await book.referred_order(merchant_id, order_id, lock=True)
    if order is None:
        return None
    order, released = order.release()
    await _save(book, order, [released] if released else [])
    return released


async def review_commission(
    merchant_id: str, order_id: str, approved: bool, reviewer_id: str, books: Books
) -> ReferredOrder:
    """A merchant approves (released at, or since, the window's end) or rejects (reversed)
    the commission of an order flagged for review."""
    async with books.transaction() as book:
        order = await book.referred_order(merchant_id, order_id, lock=True)
        if order is None:
            raise ReferredOrderNotFoundError(f"referred order {order_id} not found")
        order, events = order.reviewed(approved, reviewer_id)
        await _save(book, order, events)
        return order
