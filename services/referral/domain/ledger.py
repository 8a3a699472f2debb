"""The commission ledger: double entry, append only.

Every movement of money is one :class:`Posting` whose entries sum to zero. Each user has the
buckets pending (earned, inside the return window), available (may be withdrawn),
withdrawing (asked for, in review) and withdrawn (paid out); each merchant has one payable
account, the other side of everything the merchant owes its sharers. A balance is always the
sum of a bucket's entries, never a number kept on its own.

A reversal after release takes from available and may drive it below zero (the sharer
already withdrew it): that debt is netted against the sharer's next earnings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from services.kit.errors import InvalidArgumentError


class UnbalancedPostingError(InvalidArgumentError):
    pass


class Bucket(StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    WITHDRAWING = "withdrawing"
    WITHDRAWN = "withdrawn"
    PAYABLE = "payable"


class OwnerKind(StrEnum):
    USER = "user"
    MERCHANT = "merchant"


class PostingKind(StrEnum):
    ACCRUAL = "accrual"
    RELEASE = "release"
    REVERSAL = "reversal"
    RED_PACKET = "red_packet"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWAL_REJECTED = "withdrawal_rejected"
    WITHDRAWAL_PAID = "withdrawal_paid"


@dataclass(frozen=True)
class Entry:
    owner_kind: OwnerKind
    owner_id: str
    bucket: Bucket
    amount_minor: int


@dataclass(frozen=True)
class Posting:
    """One balanced transaction. ``transaction_id`` is unique: posting it twice is refused
    by the ledger table, which makes every posting idempotent on its cause."""

    transaction_id: str
    kind: PostingKind
    currency: str
    entries: tuple[Entry, ...]
    reference: str = ""

    def __post_init__(self) -> None:
        if not self.entries:
            raise UnbalancedPostingError("a posting has entries")
        if sum(e.amount_minor for e in self.entries) != 0:
            raise UnbalancedPostingError(f"posting {self.transaction_id} does not balance")
        if any(e.amount_minor == 0 for e in self.entries):
            raise UnbalancedPostingError("a ledger entry moves money")


def _user(user_id: str, bucket: Bucket, amount: int) -> Entry:
    return Entry(OwnerKind.USER, user_id, bucket, amount)


def _merchant(merchant_id: str, amount: int) -> Entry:
    return Entry(OwnerKind.MERCHANT, merchant_id, Bucket.PAYABLE, amount)


def _move(
    transaction_id: str,
    kind: PostingKind,
    currency: str,
    moves: Iterable[tuple[str, int]],
    source: Bucket,
    target: Bucket,
    reference: str,
) -> Posting | None:
    """Move each user's amount from ``source`` to ``target``; None when nothing moves."""
    entries: list[Entry] = []
    for user_id, amount in moves:
        if amount:
            entries += [_user(user_id, source, -amount), _user(user_id, target, amount)]
    if not entries:
        return None
    return Posting(transaction_id, kind, currency, tuple(entries), reference)


def _with_merchant(
    transaction_id: str,
    kind: PostingKind,
    currency: str,
    merchant_id: str,
    credits: Iterable[tuple[str, int]],
    bucket: Bucket,
    reference: str,
) -> Posting | None:
    """Users' ``bucket`` changes by each amount; the merchant's payable takes the other side."""
    entries = [_user(user_id, bucket, amount) for user_id, amount in credits if amount]
    if not entries:
        return None
    total = sum(e.amount_minor for e in entries)
    return Posting(
        transaction_id, kind, currency, (*entries, _merchant(merchant_id, -total)), reference
    )


def accrual(
    transaction_id: str,
    merchant_id: str,
    currency: str,
    shares: Iterable[tuple[str, int]],
    ref: str,
) -> Posting | None:
    return _with_merchant(
        transaction_id, PostingKind.ACCRUAL, currency, merchant_id, shares, Bucket.PENDING, ref
    )


def release(
    transaction_id: str, currency: str, shares: Iterable[tuple[str, int]], ref: str
) -> Posting | None:
    return _move(
        transaction_id, PostingKind.RELEASE, currency, shares, Bucket.PENDING, Bucket.AVAILABLE, ref
    )


def reversal(
    transaction_id: str,
    merchant_id: str,
    currency: str,
    shares: Iterable[tuple[str, int]],
    bucket: Bucket,
    ref: str,
) -> Posting | None:
    taken = [(user_id, -amount) for user_id, amount in shares]
    return _with_merchant(
        transaction_id, PostingKind.REVERSAL, currency, merchant_id, taken, bucket, ref
    )


def red_packet(
    transaction_id: str, merchant_id: str, currency: str, user_id: str, amount: int, ref: str
) -> Posting | None:
    return _with_merchant(
        transaction_id,
        PostingKind.RED_PACKET,
        currency,
        merchant_id,
        [(user_id, amount)],
        Bucket.AVAILABLE,
        ref,
    )


_WITHDRAWAL_MOVES = {
    PostingKind.WITHDRAWAL_REQUESTED: (Bucket.AVAILABLE, Bucket.WITHDRAWING),
    PostingKind.WITHDRAWAL_REJECTED: (Bucket.WITHDRAWING, Bucket.AVAILABLE),
    PostingKind.WITHDRAWAL_PAID: (Bucket.WITHDRAWING, Bucket.WITHDRAWN),
}


def withdrawal(
    kind: PostingKind, withdrawal_id: str, currency: str, user_id: str, amount: int
) -> Posting | None:
    source, target = _WITHDRAWAL_MOVES[kind]
    return _move(
        f"{kind.value}:{withdrawal_id}",
        kind,
        currency,
        [(user_id, amount)],
        source,
        target,
        withdrawal_id,
    )
