"""What the security tests share: fresh databases, each service's HTTP app in process on
its real dependencies (Postgres, Redis, and the running inventory and promotion gRPC
servers), and tokens for every role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from services.kit.identity import Role, TokenIssuer
from services.kit.settings import Environment, ServiceSettings
from services.kit.testing import StackEndpoints, unique
from services.order.settings import OrderSettings

PROBLEM_JSON = "application/problem+json"
ISSUER = TokenIssuer(ServiceSettings())
"""Mints with the development key, as the running service processes and the apps the
tests build (default JWT settings) verify."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_for(role: Role, merchant_id: str | None, subject: str | None = None) -> str:
    if role is Role.SERVICE:
        return ISSUER.service_token(subject or unique("svc"))
    scoped = merchant_id if role not in (Role.OPS, Role.SERVICE) else None
    return ISSUER.mint(subject or unique(role.value), [role], scoped)


def order_settings_on(stack: StackEndpoints, dsn: str, **changes: Any) -> OrderSettings:
    """The order API's settings for a test: the database ``dsn``, the stack's Redis and
    broker, and ``changes``."""
    return OrderSettings(
        environment=Environment.TEST,
        postgres_dsn=dsn,
        redis_url=stack.redis_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        **changes,
    )


@asynccontextmanager
async def serving(app: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan run, behind an in-process client."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, timeout=30.0
        ) as client,
    ):
        yield client


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (
        f"{response.request.method} {response.request.url.path}: {response.status_code}"
        f" {response.text[:300]}"
    )
    assert response.headers["content-type"] == PROBLEM_JSON, response.text[:300]
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body
