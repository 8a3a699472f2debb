"""The kernel's limits, each shown once: request bodies past the bound are refused (413,
before they are read, chunked or not); a rate limit answers 429 problem+json with
Retry-After, keeps users and addresses apart, spares exempt networks only the per-address
limit, and lets requests through when Redis is down; a webhook's nonce counts once and is
given back when applying it fails; every event appended inside a request names its caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from services.kit.context import current_context
from services.kit.errors import ResourceExhaustedError
from services.kit.eventstore import InMemoryEventStore, NewEvent, StreamAppend
from services.kit.http import CurrentCaller, PageQuery, create_app
from services.kit.identity import Role
from services.kit.nonces import NonceStore
from services.kit.ratelimit import RateLimit, RateLimiter, install_rate_limiter, limit_rate
from services.kit.redis import create_redis
from services.kit.settings import Environment, ServiceSettings
from services.kit.testing import StackEndpoints, unique
from tests.security.world import assert_problem, bearer, token_for

SETTINGS = ServiceSettings(
    service_name="limits-test", environment=Environment.TEST, http_max_body_bytes=2048
)
STORE = InMemoryEventStore()


class Body(BaseModel):
    text: str


router = APIRouter()


@router.post("/v1/echo", dependencies=[Depends(limit_rate("echo"))])
async def echo(body: Body, caller: CurrentCaller) -> dict[str, Any]:
    stored = await STORE.append(
        [StreamAppend(unique("s"), "thing", "m1", 0, [NewEvent("t.Thing", b"")])]
    )
    return {"length": len(body.text), "actor": stored[0].actor, "who": current_context().actor}


@router.get("/v1/items")
async def items(caller: CurrentCaller, page: PageQuery) -> list[int]:
    return list(range(1000))[page.offset : page.offset + page.limit]


def app_with_limits(stack: StackEndpoints, **limits: RateLimit) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(stack.redis_url)
        install_rate_limiter(
            app, redis, SETTINGS.model_copy(update={"service_name": unique("rl")}), limits
        )
        try:
            yield
        finally:
            await redis.aclose()

    return create_app(SETTINGS, title="limits", routers=[router], lifespan=lifespan)


@pytest_asyncio.fixture
async def client(stack: StackEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    app = app_with_limits(stack, echo=RateLimit("3/minute", "5/minute"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        yield c


def auth(subject: str | None = None) -> dict[str, str]:
    return bearer(token_for(Role.VIEWER, "m1", subject or unique("u")))


async def test_a_body_past_the_bound_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    declared = await client.post("/v1/echo", json={"text": "x" * 4000}, headers=auth())

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    chunked = await client.post(
        "/v1/echo", content=chunks(), headers={**auth(), "content-type": "application/json"}
    )
    fits = await client.post("/v1/echo", json={"text": "x" * 1000}, headers=auth())

    assert_problem(declared, 413)
    assert_problem(chunked, 413)
    assert fits.status_code == 200


async def test_a_user_past_the_limit_gets_429_with_retry_after_and_others_are_unaffected(
    client: httpx.AsyncClient,
) -> None:
    hammering = auth("hammer")
    answers = [
        await client.post("/v1/echo", json={"text": "x"}, headers=hammering) for _ in range(4)
    ]
    other = await client.post("/v1/echo", json={"text": "x"}, headers=auth())

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    body = assert_problem(answers[3], 429)
    assert "user" in body["detail"]
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
    assert other.status_code == 200


async def test_many_users_from_one_address_hit_the_address_limit(client: httpx.AsyncClient) -> None:
    answers = [await client.post("/v1/echo", json={"text": "x"}, headers=auth()) for _ in range(6)]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert "address" in assert_problem(answers[5], 429)["detail"]


async def test_an_exempt_network_skips_only_the_address_limit(stack: StackEndpoints) -> None:
    redis = create_redis(stack.redis_url)
    limiter = RateLimiter(
        redis, unique("rl"), {"buy": RateLimit("2/minute", "1/minute")}, ["10.0.0.0/8"]
    )
    try:
        for user in ("a", "b", "c"):
            await limiter.check("buy", user=user, address="10.1.2.3")
        await limiter.check("buy", user="a", address="10.1.2.3")
        with pytest.raises(ResourceExhaustedError):
            await limiter.check("buy", user="a", address="10.1.2.3")
        await limiter.check("buy", user="d", address="192.0.2.1")
        with pytest.raises(ResourceExhaustedError):
            await limiter.check("buy", user="e", address="192.0.2.1")
    finally:
        await redis.aclose()


async def test_each_limit_counts_what_it_accepts_whatever_the_other_answers(
    stack: StackEndpoints,
) -> None:
    redis = create_redis(stack.redis_url)
    limiter = RateLimiter(redis, unique("rl"), {"buy": RateLimit("1/minute", "2/minute")})
    try:
        await limiter.check("buy", user="a", address="192.0.2.7")
        with pytest.raises(ResourceExhaustedError, match="user"):
            await limiter.check("buy", user="a", address="192.0.2.7")
        with pytest.raises(ResourceExhaustedError, match="address") as refused:
            await limiter.check("buy", user="b", address="192.0.2.7")
        with pytest.raises(ResourceExhaustedError, match="user"):  # b's first counted
            await limiter.check("buy", user="b", address="192.0.2.8")
        await limiter.check("buy", user="c", address="192.0.2.8")
    finally:
        await redis.aclose()

    assert refused.value.retry_after_seconds is not None
    assert 1 <= refused.value.retry_after_seconds <= 60


async def test_the_limit_lets_requests_through_when_redis_is_down() -> None:
    redis = create_redis("redis://127.0.0.1:9/0", wait_seconds=0.2)
    limiter = RateLimiter(redis, "down", {"buy": RateLimit("1/minute", "1/minute")})
    try:
        for _ in range(3):
            await limiter.check("buy", user="u", address="192.0.2.1")
    finally:
        await redis.aclose()


async def test_every_event_appended_in_a_request_names_the_caller(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/v1/echo", json={"text": "x"}, headers=auth("u-audited"))

    assert answer.json()["actor"] == answer.json()["who"] == "u-audited"
    assert current_context().actor == ""  # nothing leaks out of the request


async def test_list_answers_are_paged_and_the_page_size_is_bounded(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/v1/items", headers=auth())
    later = await client.get("/v1/items?limit=5&offset=10", headers=auth())
    too_big = await client.get("/v1/items?limit=100000", headers=auth())

    assert len(first.json()) == 100
    assert later.json() == [10, 11, 12, 13, 14]
    assert_problem(too_big, 422)


async def test_a_nonce_counts_once_and_is_given_back_when_applying_it_fails(
    stack: StackEndpoints,
) -> None:
    redis = create_redis(stack.redis_url)
    namespace = unique("webhooks")
    nonces = NonceStore(redis, namespace)
    window = timedelta(minutes=15)

    async def apply_and_fail() -> None:
        async with nonces.first_time("n-1", window) as first:
            assert first
            raise RuntimeError("applying failed")

    try:
        with pytest.raises(RuntimeError):
            await apply_and_fail()
        async with nonces.first_time("n-1", window) as retried:
            seen = [retried]
        async with nonces.first_time("n-1", window) as replayed:
            seen.append(replayed)
        ttl = await redis.ttl(f"nonce:{namespace}:n-1")
    finally:
        await redis.aclose()

    assert seen == [True, False]
    assert 0 < ttl <= 900
