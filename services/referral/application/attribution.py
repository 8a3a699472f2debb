"""Attributing views (ViewerJoined) and orders (OrderPlaced) to sharers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.kit.logging import get_logger
from services.referral.application.ports import ReferralBook, RoomInfo
from services.referral.domain.attribution import (
    MAX_UPLINE_DEPTH,
    InviteeBound,
    OrderAttributed,
    Touch,
    ViewAttributed,
    choose_touch,
    level_two_of,
    visit_stream_id,
    would_cycle,
)
from services.referral.domain.codes import ShareCode, ShareCodeSigner
from services.referral.domain.commission import ReferredOrder
from services.referral.domain.events import ReferralEvent
from services.referral.domain.programme import PricedLine

log = get_logger(__name__)

SHARED_DEVICE = "shared_device"


@dataclass(frozen=True)
class AttributeView:
    merchant_id: str
    joined_event_id: str
    viewer_id: str
    room_id: str
    share_code: str
    entry: str
    channel: str
    device_id: str
    joined_at: datetime


@dataclass(frozen=True)
class AttributeOrder:
    merchant_id: str
    order_id: str
    buyer_id: str
    room_id: str
    share_code: str
    total_minor: int
    currency: str
    lines: Sequence[PricedLine]
    placed_at: datetime


async def _genuine_share(
    merchant_id: str, code: str, book: ReferralBook, signer: ShareCodeSigner
) -> ShareCode | None:
    """The share of a code a client passed along; a forged or unknown one counts for nothing
    (it is logged: someone may be probing)."""
    if not code:
        return None
    if not signer.is_genuine(merchant_id, code):
        log.warning("forged share code ignored", merchant_id=merchant_id, code=code[:40])
        return None
    return await book.share_code(merchant_id, code)


async def record_room(merchant_id: str, room: RoomInfo, book: ReferralBook) -> None:
    await book.record_room(merchant_id, room)


async def attribute_view(
    command: AttributeView, book: ReferralBook, signer: ShareCodeSigner
) -> list[ReferralEvent]:
    """Remember the viewer's device; credit a view through someone else's code to them and
    make them the viewer's inviter if the viewer has none."""
    merchant = command.merchant_id
    if command.device_id:
        await book.record_device(merchant, command.viewer_id, command.device_id)
    share = await _genuine_share(merchant, command.share_code, book, signer)
    if share is None or share.sharer_id == command.viewer_id:
        return []
    await book.add_touch(
        merchant,
        command.viewer_id,
        Touch(share.sharer_id, share.code, command.room_id, command.joined_at, command.device_id),
    )
    events: list[ReferralEvent] = [
        ViewAttributed(
            viewer_id=command.viewer_id,
            sharer_id=share.sharer_id,
            code=share.code,
            room_id=command.room_id,
            entry=command.entry,
            channel=command.channel,
            joined_at=command.joined_at,
        )
    ]
    upline = await book.upline(merchant, share.sharer_id, MAX_UPLINE_DEPTH)
    if not would_cycle(command.viewer_id, share.sharer_id, upline) and await book.bind_invitee(
        merchant, command.viewer_id, share.sharer_id, share.code
    ):
        events.append(InviteeBound(command.viewer_id, share.sharer_id, share.code))
    await book.append(visit_stream_id(merchant, command.joined_event_id), merchant, 0, events)
    return events


async def attribute_order(
    command: AttributeOrder, book: ReferralBook, signer: ShareCodeSigner, default_window: timedelta
) -> OrderAttributed | None:
    """Credit the order to the last touch in the window, once."""
    merchant = command.merchant_id
    if await book.referred_order(merchant, command.order_id) is not None:
        return None
    programme = await book.programme(merchant)
    window = (
        timedelta(seconds=programme.attribution_window_seconds) if programme else default_window
    )
    share = await _genuine_share(merchant, command.share_code, book, signer)
    order_touch = (
        Touch(share.sharer_id, share.code, command.room_id, command.placed_at)
        if share is not None
        else None
    )
    earlier = await book.touches(merchant, command.buyer_id, command.placed_at - window)
    chosen = choose_touch(command.buyer_id, command.placed_at, window, order_touch, earlier)
    if chosen is None:
        return None
    touch, source = chosen
    upline = await book.upline(merchant, touch.sharer_id, MAX_UPLINE_DEPTH)
    flagged = await book.shares_device(merchant, touch.sharer_id, command.buyer_id)
    event = OrderAttributed(
        order_id=command.order_id,
        buyer_id=command.buyer_id,
        sharer_id=touch.sharer_id,
        code=touch.code,
        room_id=command.room_id or touch.room_id,
        source=source,
        total_minor=command.total_minor,
        currency=command.currency,
        level_two_id=level_two_of(command.buyer_id, upline),
        flagged=flagged,
        flag_reason=SHARED_DEVICE if flagged else "",
    )
    order = ReferredOrder.attributed(merchant, event, command.lines)
    await book.save_referred_order(order, [event], placed_at=command.placed_at)
    return event
