"""Fixtures for analytics tests against the real stack: a database of its own for each test
module, the service's parts on it, the scripted stream for a fresh merchant, and the HTTP
API on the same parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest_asyncio

from services.analytics.bootstrap import Analytics, analytics
from services.analytics.domain.counters import minute_of
from services.analytics.entrypoints.http import create_http_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.tests.script import Script, scripted_stream
from services.kit.identity import Role, TokenIssuer
from services.kit.scaffolding import throwaway_database
from services.kit.settings import Environment
from services.kit.testing import StackEndpoints, unique


@pytest_asyncio.fixture(scope="module")
async def analytics_settings(stack: StackEndpoints) -> AsyncIterator[AnalyticsSettings]:
    async with throwaway_database(stack.postgres_dsn, "analytics_test") as dsn:
        yield AnalyticsSettings(
            environment=Environment.TEST,
            postgres_dsn=dsn,
            kafka_bootstrap=stack.kafka_bootstrap,
            kafka_profile=stack.kafka_profile,
            kafka_partitions=3,
            live_poll_seconds=0.05,
        )


@pytest_asyncio.fixture(scope="module")
async def parts(analytics_settings: AnalyticsSettings) -> AsyncIterator[Analytics]:
    async with analytics(analytics_settings) as built:
        yield built


@pytest_asyncio.fixture
async def script() -> Script:
    """The scripted stream of a fresh merchant, started two hours ago on a minute."""
    t0 = minute_of(datetime.now(UTC) - timedelta(hours=2))
    return scripted_stream(unique("m"), t0)


def raw(script: Script) -> list[bytes]:
    return [envelope.SerializeToString() for _, envelope in script.envelopes]


def bearer(parts: Analytics, subject: str, *roles: Role, merchant: str | None) -> dict[str, str]:
    token = TokenIssuer(parts.settings).mint(subject, roles, merchant)
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture
async def http(parts: Analytics) -> AsyncIterator[httpx.AsyncClient]:
    app = create_http_app(parts.settings)
    app.state.analytics = parts
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://analytics") as client:
        yield client
