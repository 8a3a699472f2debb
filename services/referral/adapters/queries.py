"""Read-side queries for the HTTP API and the worker: balances and statements from the
ledger, withdrawals, reviews and merchant reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.referral.domain.ledger import Bucket


@dataclass(frozen=True)
class LedgerLine:
    entry_id: int
    transaction_id: str
    kind: str
    bucket: str
    amount_minor: int
    currency: str
    reference: str
    created_at: datetime


@dataclass(frozen=True)
class WithdrawalRow:
    withdrawal_id: str
    user_id: str
    amount_minor: int
    currency: str
    state: str
    reviewer_id: str
    provider_payout_id: str
    requested_at: datetime


@dataclass(frozen=True)
class ReviewRow:
    order_id: str
    buyer_id: str
    sharer_id: str
    flag_reason: str
    outstanding_minor: int
    release_due: bool


@dataclass(frozen=True)
class Report:
    attributed_orders: int
    paid_orders: int
    referred_gmv_minor: int
    refunded_minor: int
    commission_by_kind: dict[str, int]
    red_packets_granted: int
    red_packets_minor: int
    payable_minor: int
    unbalanced_postings: int


def _withdrawal(row: asyncpg.Record) -> WithdrawalRow:
    return WithdrawalRow(
        withdrawal_id=row["withdrawal_id"],
        user_id=row["user_id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        state=row["state"],
        reviewer_id=row["reviewer_id"],
        provider_payout_id=row["provider_payout_id"],
        requested_at=row["requested_at"],
    )


class ReferralQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def balances(self, merchant_id: str, user_id: str) -> dict[Bucket, int]:
        rows = await self._pool.fetch(
            "SELECT bucket, sum(balance_minor) AS balance FROM account_balances"
            " WHERE merchant_id = $1 AND owner_kind = 'user' AND owner_id = $2 GROUP BY bucket",
            merchant_id,
            user_id,
        )
        found = {Bucket(r["bucket"]): int(r["balance"]) for r in rows}
        return {b: found.get(b, 0) for b in Bucket if b is not Bucket.PAYABLE}

    async def statement(
        self, merchant_id: str, user_id: str, limit: int, before: int | None
    ) -> list[LedgerLine]:
        rows = await self._pool.fetch(
            "SELECT entry_id, transaction_id, kind, bucket, amount_minor, currency, reference,"
            " created_at FROM ledger_entries WHERE merchant_id = $1 AND owner_kind = 'user'"
            " AND owner_id = $2 AND entry_id < $3 ORDER BY entry_id DESC LIMIT $4",
            merchant_id,
            user_id,
            before or 2**62,
            limit,
        )
        return [LedgerLine(**dict(r)) for r in rows]

    async def withdrawals(
        self,
        merchant_id: str,
        *,
        user_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[WithdrawalRow]:
        """Newest first, one page (``limit`` rows after ``offset``)."""
        rows = await self._pool.fetch(
            "SELECT * FROM withdrawals WHERE merchant_id = $1"
            " AND ($2::text IS NULL OR user_id = $2) AND ($3::text IS NULL OR state = $3)"
            " ORDER BY requested_at DESC, withdrawal_id LIMIT $4 OFFSET $5",
            merchant_id,
            user_id,
            state,
            limit,
            offset,
        )
        return [_withdrawal(r) for r in rows]

    async def approved_unpaid(self, limit: int = 100) -> list[tuple[str, str]]:
        """(merchant, withdrawal) of every approved withdrawal whose payout has not landed."""
        rows = await self._pool.fetch(
            "SELECT merchant_id, withdrawal_id FROM withdrawals WHERE state = 'approved'"
            " ORDER BY updated_at LIMIT $1",
            limit,
        )
        return [(r["merchant_id"], r["withdrawal_id"]) for r in rows]

    async def reviews(
        self, merchant_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[ReviewRow]:
        """Oldest first, one page (``limit`` rows after ``offset``)."""
        rows = await self._pool.fetch(
            "SELECT order_id, buyer_id, sharer_id, flag_reason, release_due,"
            " (SELECT coalesce(sum((a->>'amount_minor')::bigint - (a->>'reversed_minor')::bigint),"
            " 0) FROM jsonb_array_elements(accruals) a) AS outstanding"
            " FROM referred_orders WHERE merchant_id = $1 AND review = 'waiting'"
            " ORDER BY placed_at, order_id LIMIT $2 OFFSET $3",
            merchant_id,
            limit,
            offset,
        )
        return [
            ReviewRow(
                order_id=r["order_id"],
                buyer_id=r["buyer_id"],
                sharer_id=r["sharer_id"],
                flag_reason=r["flag_reason"],
                outstanding_minor=int(r["outstanding"]),
                release_due=r["release_due"],
            )
            for r in rows
        ]

    async def report(self, merchant_id: str) -> Report:
        orders = await self._pool.fetchrow(
            "SELECT count(*) AS attributed, count(paid_at) AS paid,"
            " coalesce(sum(total_minor) FILTER (WHERE paid_at IS NOT NULL), 0) AS gmv,"
            " coalesce(sum(refunded_minor), 0) AS refunded"
            " FROM referred_orders WHERE merchant_id = $1",
            merchant_id,
        )
        kinds = await self._pool.fetch(
            "SELECT kind, sum(amount_minor) AS total FROM ledger_entries"
            " WHERE merchant_id = $1 AND owner_kind = 'user' AND amount_minor > 0"
            " AND kind IN ('accrual', 'release') GROUP BY kind"
            " UNION ALL SELECT 'reversal', coalesce(-sum(amount_minor), 0) FROM ledger_entries"
            " WHERE merchant_id = $1 AND owner_kind = 'user' AND kind = 'reversal'",
            merchant_id,
        )
        packets = await self._pool.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(amount_minor), 0) AS total"
            " FROM red_packet_grants WHERE merchant_id = $1",
            merchant_id,
        )
        assert orders is not None  # an aggregate always returns a row
        assert packets is not None
        payable = await self._pool.fetchval(
            "SELECT coalesce(sum(balance_minor), 0) FROM account_balances"
            " WHERE merchant_id = $1 AND owner_kind = 'merchant'",
            merchant_id,
        )
        return Report(
            attributed_orders=orders["attributed"],
            paid_orders=orders["paid"],
            referred_gmv_minor=int(orders["gmv"]),
            refunded_minor=int(orders["refunded"]),
            commission_by_kind={r["kind"]: int(r["total"]) for r in kinds},
            red_packets_granted=packets["n"],
            red_packets_minor=int(packets["total"]),
            payable_minor=-int(payable),
            unbalanced_postings=await self.unbalanced_postings(merchant_id),
        )

    async def unbalanced_postings(self, merchant_id: str | None = None) -> int:
        """Postings whose entries do not sum to zero: always 0 (the ledger's invariant)."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM ledger_entries"
            " WHERE $1::text IS NULL OR merchant_id = $1"
            " GROUP BY merchant_id, transaction_id HAVING sum(amount_minor) <> 0) AS t",
            merchant_id,
        )
        return value
