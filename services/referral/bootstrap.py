"""Build the referral service's parts once per process, for any entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from services.kit.db import database
from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.redis import create_redis
from services.referral.adapters.book import PostgresBooks
from services.referral.adapters.cards import PillowCardRenderer, PostgresCardCache
from services.referral.adapters.payouts import SandboxPayouts
from services.referral.adapters.queries import ReferralQueries
from services.referral.adapters.redis_boards import RedisLeaderboards, RedisMintLimiter
from services.referral.application.ports import Leaderboards, PayoutProvider
from services.referral.application.sharing import InvitationCards, SharingPolicy
from services.referral.domain.codes import ShareCodeSigner
from services.referral.settings import ReferralSettings

SCHEMA_PACKAGES = ["services.referral"]


@dataclass(frozen=True)
class Referral:
    settings: ReferralSettings
    pool: asyncpg.Pool
    redis: Redis
    store: PostgresEventStore
    books: PostgresBooks
    queries: ReferralQueries
    sharing: SharingPolicy
    cards: InvitationCards
    boards: Leaderboards
    payouts: PayoutProvider
    clock: Callable[[], datetime]

    @property
    def signer(self) -> ShareCodeSigner:
        return self.sharing.signer

    @property
    def default_attribution_window(self) -> timedelta:
        return timedelta(seconds=self.settings.attribution_window_seconds)


@asynccontextmanager
async def referral(
    settings: ReferralSettings, *, clock: Callable[[], datetime] = utcnow
) -> AsyncIterator[Referral]:
    """``clock`` is the time share codes are stamped with (tests move it)."""
    async with database(settings, SCHEMA_PACKAGES) as pool:
        redis = create_redis(settings.redis_url)
        store = PostgresEventStore(pool, settings.service_name)
        books = PostgresBooks(pool, store)
        sharing = SharingPolicy(
            signer=ShareCodeSigner(settings.share_code_key.get_secret_value().encode()),
            limiter=RedisMintLimiter(redis),
            mint_limit_per_minute=settings.mint_limit_per_minute,
            h5_base_url=settings.h5_base_url,
            app_scheme=settings.app_scheme,
        )
        try:
            yield Referral(
                settings=settings,
                pool=pool,
                redis=redis,
                store=store,
                books=books,
                queries=ReferralQueries(pool),
                sharing=sharing,
                cards=InvitationCards(
                    books,
                    PostgresCardCache(pool),
                    PillowCardRenderer(settings.card_font_path),
                    sharing,
                ),
                boards=RedisLeaderboards(redis),
                payouts=SandboxPayouts(pool),
                clock=clock,
            )
        finally:
            await redis.aclose()
