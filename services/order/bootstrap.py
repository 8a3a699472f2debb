"""Build the order service's parts once per process, for any entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.kit.batching import ReplyPacer
from services.kit.db import database
from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.grpc import authenticated_channel
from services.kit.identity import ServiceIdentity
from services.kit.sold_out import SoldOutMemory
from services.order.adapters.inventory_client import GrpcStock
from services.order.adapters.promotion_client import GrpcPricing
from services.order.adapters.sandbox_payments import SandboxPaymentProvider
from services.order.adapters.store import (
    PostgresIdempotencyKeys,
    PostgresOrderStore,
    PostgresOrderViews,
)
from services.order.application.orders import Orders
from services.order.application.payments import PaymentProvider
from services.order.settings import OrderSettings

SCHEMA_PACKAGES = ["services.order"]


@dataclass(frozen=True)
class OrderService:
    settings: OrderSettings
    pool: asyncpg.Pool
    store: PostgresOrderStore
    views: PostgresOrderViews
    orders: Orders
    provider_name: str
    payments: PaymentProvider
    sold_out_pacer: ReplyPacer
    """The HTTP API's "sold out" refusals leave through it."""


def payment_provider(settings: OrderSettings) -> PaymentProvider:
    return SandboxPaymentProvider(
        base_url=settings.sandbox_url,
        api_key=settings.sandbox_api_key.get_secret_value(),
        signing_secret=settings.sandbox_signing_secret.get_secret_value(),
    )


@asynccontextmanager
async def order_service(
    settings: OrderSettings,
    *,
    clock: Callable[[], datetime] = utcnow,
    payments: PaymentProvider | None = None,
) -> AsyncIterator[OrderService]:
    """``clock`` is the time deadlines are judged by; ``payments`` replaces the configured
    provider (tests pass a sandbox provider pointed at their own gateway)."""
    identity = ServiceIdentity(settings)
    async with database(settings, SCHEMA_PACKAGES) as pool:
        inventory = authenticated_channel(settings.inventory_target, identity.token)
        promotion = authenticated_channel(settings.promotion_target, identity.token)
        provider = payments or payment_provider(settings)
        store = PostgresOrderStore(pool, PostgresEventStore(pool, settings.service_name))
        try:
            yield OrderService(
                settings=settings,
                pool=pool,
                store=store,
                views=PostgresOrderViews(pool),
                orders=Orders(
                    store,
                    PostgresIdempotencyKeys(pool),
                    GrpcPricing(promotion, settings.rpc_timeout_seconds),
                    GrpcStock(inventory, settings.rpc_timeout_seconds),
                    provider,
                    settings.policy(provider.name),
                    clock=clock,
                    sold_out=SoldOutMemory(settings.sold_out_memory_seconds),
                ),
                provider_name=provider.name,
                payments=provider,
                sold_out_pacer=ReplyPacer(settings.sold_out_reply_interval_ms / 1000),
            )
        finally:
            await inventory.close()
            await promotion.close()
            await provider.aclose()
