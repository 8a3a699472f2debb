"""The built-in sandbox payout provider: pays nothing real, records each payout once in
Postgres, so that a retried approval finds the payout it already made."""

from __future__ import annotations

import hashlib

import asyncpg

from services.referral.application.ports import Payout

SANDBOX = "sandbox"


class SandboxPayouts:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def pay(
        self, merchant_id: str, withdrawal_id: str, user_id: str, amount_minor: int, currency: str
    ) -> Payout:
        digest = hashlib.sha256(f"{merchant_id}:{withdrawal_id}".encode()).hexdigest()[:20]
        payout_id: str = await self._pool.fetchval(
            "WITH made AS (INSERT INTO sandbox_payouts (merchant_id, withdrawal_id, payout_id,"
            " user_id, amount_minor, currency) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (merchant_id, withdrawal_id) DO NOTHING RETURNING payout_id)"
            " SELECT payout_id FROM made UNION ALL SELECT payout_id FROM sandbox_payouts"
            " WHERE merchant_id = $1 AND withdrawal_id = $2 LIMIT 1",
            merchant_id,
            withdrawal_id,
            f"sbx-{digest}",
            user_id,
            amount_minor,
            currency,
        )
        return Payout(SANDBOX, payout_id)
