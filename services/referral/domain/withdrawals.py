"""Withdrawals: a user asks to be paid what is available; a merchant or ops reviews; the
payout provider pays. requested -> approved -> paid, or requested -> rejected."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from services.kit.errors import InvalidArgumentError, NotFoundError, PreconditionFailedError
from services.kit.tenancy import validate_id, validate_merchant_id


class BelowMinimumWithdrawalError(InvalidArgumentError):
    pass


class InsufficientBalanceError(PreconditionFailedError):
    pass


class WithdrawalStateError(PreconditionFailedError):
    pass


class WithdrawalNotFoundError(NotFoundError):
    pass


class WithdrawalState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"


@dataclass(frozen=True)
class RequestWithdrawal:
    merchant_id: str
    withdrawal_id: str
    user_id: str
    amount_minor: int


@dataclass(frozen=True)
class WithdrawalRequested:
    withdrawal_id: str
    user_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class WithdrawalApproved:
    withdrawal_id: str
    reviewer_id: str


@dataclass(frozen=True)
class WithdrawalRejected:
    withdrawal_id: str
    reviewer_id: str
    reason: str


@dataclass(frozen=True)
class WithdrawalPaid:
    withdrawal_id: str
    user_id: str
    amount_minor: int
    currency: str
    provider: str
    provider_payout_id: str


WithdrawalEvent = WithdrawalRequested | WithdrawalApproved | WithdrawalRejected | WithdrawalPaid


def request_withdrawal(
    command: RequestWithdrawal, available_minor: int, minimum_minor: int, currency: str
) -> WithdrawalRequested:
    validate_merchant_id(command.merchant_id)
    validate_id(command.withdrawal_id, "withdrawal id")
    if command.amount_minor < max(1, minimum_minor):
        raise BelowMinimumWithdrawalError(
            f"the smallest withdrawal is {max(1, minimum_minor)} minor units"
        )
    if command.amount_minor > available_minor:
        raise InsufficientBalanceError(
            f"{command.amount_minor} asked for, {max(0, available_minor)} available"
        )
    return WithdrawalRequested(
        command.withdrawal_id, command.user_id, command.amount_minor, currency
    )


@dataclass(frozen=True)
class Withdrawal:
    merchant_id: str
    withdrawal_id: str
    user_id: str
    amount_minor: int
    currency: str
    state: WithdrawalState = WithdrawalState.REQUESTED
    reviewer_id: str = ""
    provider_payout_id: str = ""
    version: int = 0

    @staticmethod
    def stream_id(merchant_id: str, withdrawal_id: str) -> str:
        return f"withdrawal:{validate_merchant_id(merchant_id)}:{withdrawal_id}"

    @classmethod
    def requested(cls, merchant_id: str, event: WithdrawalRequested) -> Withdrawal:
        return cls(
            merchant_id, event.withdrawal_id, event.user_id, event.amount_minor, event.currency
        )

    def _expect(self, state: WithdrawalState, action: str) -> None:
        if self.state is not state:
            raise WithdrawalStateError(
                f"withdrawal {self.withdrawal_id} is {self.state.value}; cannot {action}"
            )

    def approve(self, reviewer_id: str) -> WithdrawalApproved:
        self._expect(WithdrawalState.REQUESTED, "approve")
        return WithdrawalApproved(self.withdrawal_id, reviewer_id)

    def reject(self, reviewer_id: str, reason: str) -> WithdrawalRejected:
        self._expect(WithdrawalState.REQUESTED, "reject")
        return WithdrawalRejected(self.withdrawal_id, reviewer_id, reason)

    def pay(self, provider: str, provider_payout_id: str) -> WithdrawalPaid:
        self._expect(WithdrawalState.APPROVED, "pay")
        return WithdrawalPaid(
            self.withdrawal_id,
            self.user_id,
            self.amount_minor,
            self.currency,
            provider,
            provider_payout_id,
        )

    def apply(self, event: WithdrawalEvent) -> Withdrawal:
        match event:
            case WithdrawalApproved():
                return replace(self, state=WithdrawalState.APPROVED, reviewer_id=event.reviewer_id)
            case WithdrawalRejected():
                return replace(self, state=WithdrawalState.REJECTED, reviewer_id=event.reviewer_id)
            case WithdrawalPaid():
                return replace(
                    self,
                    state=WithdrawalState.PAID,
                    provider_payout_id=event.provider_payout_id,
                )
        return self
