"""What the referral handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from services.referral.domain.attribution import Touch
from services.referral.domain.codes import ShareCode, ShareTargetKind
from services.referral.domain.commission import ReferredOrder
from services.referral.domain.events import ReferralEvent
from services.referral.domain.ledger import Bucket, Posting
from services.referral.domain.programme import CommissionShare, Programme
from services.referral.domain.red_packets import RedPacketCampaign
from services.referral.domain.withdrawals import Withdrawal, WithdrawalEvent


@dataclass(frozen=True)
class RoomInfo:
    room_id: str
    title: str
    host_id: str
    starts_at: datetime


@dataclass(frozen=True)
class Payout:
    provider: str
    provider_payout_id: str


@dataclass(frozen=True)
class CardContent:
    sharer_name: str
    room_title: str
    starts_at: datetime | None
    link: str


class ReferralBook(Protocol):
    """The referral state inside one database transaction.

    Everything written through one book commits together with the events it appends (and,
    in a consumer, with the inbox row): a redelivered event, a retried request or a crash
    never leaves a table, the ledger and the events apart. Reads that precede a change
    (``lock=True``, the daily allowance, the wallet) lock what they read until commit."""

    async def append(
        self,
        stream_id: str,
        merchant_id: str,
        expected_version: int,
        events: Sequence[ReferralEvent],
    ) -> None:
        """Append after ``expected_version`` (0: a new stream); ConcurrencyError otherwise.
        The aggregate type is the stream id's first part (``share``, ``referral`` ...)."""
        ...

    async def add_share_code(self, share: ShareCode) -> None: ...

    async def share_code(self, merchant_id: str, code: str) -> ShareCode | None: ...

    async def share_code_for(
        self, merchant_id: str, sharer_id: str, kind: ShareTargetKind, target_id: str
    ) -> ShareCode | None:
        """The sharer's most recent code for this target, if any."""
        ...

    async def share_codes_of(
        self, merchant_id: str, sharer_id: str, limit: int
    ) -> list[ShareCode]: ...

    async def record_room(self, merchant_id: str, room: RoomInfo) -> None: ...

    async def room(self, merchant_id: str, room_id: str) -> RoomInfo | None: ...

    async def record_device(self, merchant_id: str, user_id: str, device_id: str) -> None: ...

    async def shares_device(self, merchant_id: str, user_a: str, user_b: str) -> bool: ...

    async def add_touch(self, merchant_id: str, viewer_id: str, touch: Touch) -> None: ...

    async def touches(self, merchant_id: str, viewer_id: str, since: datetime) -> list[Touch]: ...

    async def upline(self, merchant_id: str, user_id: str, depth: int) -> list[str]:
        """The user's inviter, the inviter's inviter ... at most ``depth`` of them."""
        ...

    async def bind_invitee(
        self, merchant_id: str, invitee_id: str, inviter_id: str, code: str
    ) -> bool:
        """Make ``inviter`` the invitee's inviter unless the invitee has one; True if bound."""
        ...

    async def programme(self, merchant_id: str) -> Programme | None: ...

    async def save_programme(self, programme: Programme) -> None: ...

    async def referred_order(
        self, merchant_id: str, order_id: str, *, lock: bool = False
    ) -> ReferredOrder | None: ...

    async def save_referred_order(
        self,
        order: ReferredOrder,
        events: Sequence[ReferralEvent],
        placed_at: datetime | None = None,
    ) -> None:
        """Append the events after ``order.version`` and write the order's row."""
        ...

    async def accrued_on(
        self, merchant_id: str, user_ids: Sequence[str], day: date
    ) -> dict[str, int]:
        """Commission accrued to each user on ``day``, locked until commit (the daily cap)."""
        ...

    async def add_accrued(
        self, merchant_id: str, shares: Sequence[CommissionShare], day: date
    ) -> None: ...

    async def schedule_release(self, merchant_id: str, order_id: str, due_at: datetime) -> None:
        """The durable timer that releases the order's commission at ``due_at``."""
        ...

    async def post(self, merchant_id: str, posting: Posting) -> None:
        """Write one balanced posting to the ledger."""
        ...

    async def balance(self, merchant_id: str, user_id: str, bucket: Bucket) -> int:
        """A user's balance of one bucket: the sum of its ledger entries."""
        ...

    async def first_purchase(self, merchant_id: str, buyer_id: str, order_id: str) -> bool:
        """Record the buyer's first paid order; False if the buyer had paid one before."""
        ...

    async def add_campaign(self, campaign: RedPacketCampaign) -> None: ...

    async def campaign(self, merchant_id: str, campaign_id: str) -> RedPacketCampaign | None: ...

    async def running_campaigns(
        self, merchant_id: str, at: datetime
    ) -> list[RedPacketCampaign]: ...

    async def take_from_budget(
        self, merchant_id: str, campaign_id: str, amount_minor: int
    ) -> int | None:
        """Spend ``amount_minor`` of the campaign's budget if that much is left, atomically;
        the campaign's new granted total, or None when the budget cannot cover it."""
        ...

    async def record_grant(
        self,
        merchant_id: str,
        campaign_id: str,
        order_id: str,
        inviter: str,
        invitee: str,
        amount_minor: int,
    ) -> None: ...

    async def lock_wallet(self, merchant_id: str, user_id: str) -> None:
        """Serialise the user's withdrawals until commit."""
        ...

    async def withdrawal(
        self, merchant_id: str, withdrawal_id: str, *, lock: bool = False
    ) -> Withdrawal | None: ...

    async def save_withdrawal(
        self, withdrawal: Withdrawal, events: Sequence[WithdrawalEvent]
    ) -> None:
        """Append the events after ``withdrawal.version`` and write the withdrawal's row."""
        ...


class Books(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[ReferralBook]:
        """A book on a new transaction, committed when the block exits without error."""
        ...


class MintLimiter(Protocol):
    async def allow(self, merchant_id: str, user_id: str, limit_per_minute: int) -> bool:
        """Count one minting for the user in the current minute; False over the limit."""
        ...


class Leaderboards(Protocol):
    async def add(
        self,
        merchant_id: str,
        change_id: str,
        boards: Sequence[str],
        sharer_id: str,
        gmv_minor: int,
    ) -> None:
        """Add ``gmv_minor`` (negative for refunds) to the sharer on every board, once per
        ``change_id`` whatever the retries."""
        ...

    async def top(self, merchant_id: str, board: str, limit: int) -> list[tuple[str, int]]: ...


class PayoutProvider(Protocol):
    async def pay(
        self, merchant_id: str, withdrawal_id: str, user_id: str, amount_minor: int, currency: str
    ) -> Payout:
        """Pay the user; idempotent on the withdrawal id (a retry returns the same payout)."""
        ...


class CardCache(Protocol):
    async def get(
        self, merchant_id: str, room_id: str, user_id: str, fingerprint: str
    ) -> bytes | None:
        """The user's card for the room if one was rendered for exactly this content."""
        ...

    async def put(
        self, merchant_id: str, room_id: str, user_id: str, fingerprint: str, png: bytes
    ) -> None: ...


class CardRenderer(Protocol):
    def render(self, content: CardContent) -> bytes:
        """The invitation card as PNG bytes."""
        ...
