"""Build the analytics service's parts once per process, for any entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from services.analytics.adapters.decoding import decode
from services.analytics.adapters.postgres import PostgresProjections
from services.analytics.adapters.queries import PostgresQueries
from services.analytics.application.processor import Processor
from services.analytics.settings import AnalyticsSettings
from services.kit.db import database

SCHEMA_PACKAGES = ["services.analytics"]


@dataclass(frozen=True)
class Analytics:
    settings: AnalyticsSettings
    pool: asyncpg.Pool
    processor: Processor
    queries: PostgresQueries


def assemble(settings: AnalyticsSettings, pool: asyncpg.Pool) -> Analytics:
    return Analytics(
        settings=settings,
        pool=pool,
        processor=Processor(PostgresProjections(pool), decode),
        queries=PostgresQueries(pool),
    )


@asynccontextmanager
async def analytics(settings: AnalyticsSettings) -> AsyncIterator[Analytics]:
    async with database(settings, SCHEMA_PACKAGES) as pool:
        yield assemble(settings, pool)
