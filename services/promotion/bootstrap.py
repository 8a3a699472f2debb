"""Build the promotion service's parts once per process, for any entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from services.kit.db import database
from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.grpc import authenticated_channel
from services.kit.identity import ServiceIdentity
from services.kit.redis import create_redis
from services.promotion.adapters.campaign_book import CampaignBook
from services.promotion.adapters.coupon_ledger import CouponLedger
from services.promotion.adapters.group_ledger import GroupLedger
from services.promotion.adapters.inventory_client import GrpcInventorySales
from services.promotion.adapters.price_book import PriceBook
from services.promotion.adapters.redis_coupons import RedisCouponStock
from services.promotion.application.campaigns import Campaigns
from services.promotion.application.coupons import Coupons
from services.promotion.application.group_buys import GroupBuys
from services.promotion.application.ports import InventorySales
from services.promotion.application.pricing import Pricing
from services.promotion.settings import PromotionSettings

SCHEMA_PACKAGES = ["services.promotion"]


@dataclass(frozen=True)
class Promotion:
    settings: PromotionSettings
    pool: asyncpg.Pool
    redis: Redis
    store: PostgresEventStore
    prices: PriceBook
    coupon_ledger: CouponLedger
    coupons: Coupons
    campaign_book: CampaignBook
    campaigns: Campaigns
    group_ledger: GroupLedger
    groups: GroupBuys
    pricing: Pricing


@asynccontextmanager
async def promotion(
    settings: PromotionSettings,
    *,
    clock: Callable[[], datetime] = utcnow,
    inventory: InventorySales | None = None,
) -> AsyncIterator[Promotion]:
    """``clock``: the time windows are judged by (tests move it); ``inventory``: the
    inventory sales port (by default the inventory gRPC service, as this service)."""
    async with database(settings, SCHEMA_PACKAGES) as pool:
        redis = create_redis(settings.redis_url)
        store = PostgresEventStore(pool, settings.service_name)
        channel = None
        if inventory is None:
            identity = ServiceIdentity(settings)  # short-lived, renewed at half its life
            channel = authenticated_channel(settings.inventory_grpc_target, identity.token)
            inventory = GrpcInventorySales(channel)
        prices = PriceBook(pool, store)
        coupon_ledger = CouponLedger(pool, store, group_commits=settings.claim_group_commits)
        coupons = Coupons(
            coupon_ledger,
            RedisCouponStock(redis, settings.claim_rate_limit),
            clock=clock,
            max_batch=settings.claim_max_batch,
        )
        campaign_book = CampaignBook(pool, store)
        group_ledger = GroupLedger(pool, store)
        try:
            yield Promotion(
                settings=settings,
                pool=pool,
                redis=redis,
                store=store,
                prices=prices,
                coupon_ledger=coupon_ledger,
                coupons=coupons,
                campaign_book=campaign_book,
                campaigns=Campaigns(campaign_book, inventory, clock=clock),
                group_ledger=group_ledger,
                groups=GroupBuys(group_ledger, clock=clock),
                pricing=Pricing(
                    prices,
                    campaign_book,
                    group_ledger,
                    coupons,
                    coupon_ledger,
                    clock=clock,
                    default_lock=timedelta(seconds=settings.coupon_lock_seconds),
                ),
            )
        finally:
            await coupon_ledger.close()
            if channel is not None:
                await channel.close()
            await redis.aclose()
