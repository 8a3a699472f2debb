"""Withdrawals: asked for by a user, reviewed by the merchant or ops, paid by the payout
provider. The money moves in the ledger with each step: available -> withdrawing on the
request, withdrawing -> withdrawn when paid, back to available when rejected."""

from __future__ import annotations

from collections.abc import Sequence

from services.kit.errors import AlreadyExistsError
from services.kit.logging import get_logger
from services.referral.application.ports import Books, PayoutProvider, ReferralBook
from services.referral.domain import ledger
from services.referral.domain.ledger import Bucket, PostingKind
from services.referral.domain.programme import Programme
from services.referral.domain.withdrawals import (
    RequestWithdrawal,
    Withdrawal,
    WithdrawalEvent,
    WithdrawalNotFoundError,
    WithdrawalPaid,
    WithdrawalRejected,
    WithdrawalRequested,
    WithdrawalState,
    request_withdrawal,
)

log = get_logger(__name__)

_POSTING_OF = {
    WithdrawalRequested: PostingKind.WITHDRAWAL_REQUESTED,
    WithdrawalRejected: PostingKind.WITHDRAWAL_REJECTED,
    WithdrawalPaid: PostingKind.WITHDRAWAL_PAID,
}


async def _record(
    book: ReferralBook,
    withdrawal: Withdrawal,
    events: Sequence[WithdrawalEvent],
) -> Withdrawal:
    for event in events:
        kind = _POSTING_OF.get(type(event))
        if kind is not None:
            posting = ledger.withdrawal(
                kind,
                withdrawal.withdrawal_id,
                withdrawal.currency,
                withdrawal.user_id,
                withdrawal.amount_minor,
            )
            if posting is not None:
                await book.post(withdrawal.merchant_id, posting)
    await book.save_withdrawal(withdrawal, events)
    after = withdrawal
    for event in events:
        after = after.apply(event)
    return after


async def request(command: RequestWithdrawal, books: Books) -> Withdrawal:
    """Take the amount out of available into withdrawing, under the user's wallet lock so
    that two requests can never both spend the same balance."""
    async with books.transaction() as book:
        await book.lock_wallet(command.merchant_id, command.user_id)
        existing = await book.withdrawal(command.merchant_id, command.withdrawal_id)
        if existing is not None:
            if (
                existing.user_id == command.user_id
                and existing.amount_minor == command.amount_minor
            ):
                return existing
            raise AlreadyExistsError(f"withdrawal {command.withdrawal_id} exists")
        programme = await book.programme(command.merchant_id) or Programme(command.merchant_id)
        available = await book.balance(command.merchant_id, command.user_id, Bucket.AVAILABLE)
        event = request_withdrawal(
            command, available, programme.min_withdrawal_minor, programme.currency
        )
        return await _record(book, Withdrawal.requested(command.merchant_id, event), [event])


async def _change(
    merchant_id: str, withdrawal_id: str, books: Books, decide: str, reviewer: str, reason: str
) -> Withdrawal:
    async with books.transaction() as book:
        found = await book.withdrawal(merchant_id, withdrawal_id, lock=True)
        if found is None:
            raise WithdrawalNotFoundError(f"withdrawal {withdrawal_id} not found")
        event = found.approve(reviewer) if decide == "approve" else found.reject(reviewer, reason)
        return await _record(book, found, [event])


async def approve(
    merchant_id: str, withdrawal_id: str, reviewer_id: str, books: Books, payouts: PayoutProvider
) -> Withdrawal:
    """Approve, then pay. A payout that fails leaves the withdrawal approved; the worker
    pays it later (the provider is idempotent on the withdrawal id)."""
    approved = await _change(merchant_id, withdrawal_id, books, "approve", reviewer_id, "")
    try:
        return await pay(merchant_id, withdrawal_id, books, payouts)
    except Exception as error:
        log.warning("payout failed; will retry", withdrawal_id=withdrawal_id, error=repr(error))
        return approved


async def reject(
    merchant_id: str, withdrawal_id: str, reviewer_id: str, reason: str, books: Books
) -> Withdrawal:
    return await _change(merchant_id, withdrawal_id, books, "reject", reviewer_id, reason)


async def pay(
    merchant_id: str, withdrawal_id: str, books: Books, payouts: PayoutProvider
) -> Withdrawal:
    async with books.transaction() as book:
        found = await book.withdrawal(merchant_id, withdrawal_id, lock=True)
        if found is None:
            raise WithdrawalNotFoundError(f"withdrawal {withdrawal_id} not found")
        if found.state is not WithdrawalState.APPROVED:
            return found
        payout = await payouts.pay(
            merchant_id, withdrawal_id, found.user_id, found.amount_minor, found.currency
        )
        return await _record(book, found, [found.pay(payout.provider, payout.provider_payout_id)])
