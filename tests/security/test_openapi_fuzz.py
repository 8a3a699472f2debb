"""Schemathesis against every service's OpenAPI schema: each operation of order, promotion,
inventory and referral is called with generated inputs (a bounded number of examples) and a
valid bearer token of a merchant's user holding every merchant-side role, so the inputs get
past authentication into the handlers. No answer may be a 5xx, and every 4xx must be
problem+json.

Each service runs in process (uvicorn in a thread, its lifespan and all) on a database of
its own; order's gRPC dependencies are the running inventory and promotion processes."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from services.inventory.entrypoints.http import create_http_app as inventory_app
from services.inventory.settings import InventorySettings
from services.kit.identity import Role
from services.kit.settings import Environment
from services.kit.testing import StackEndpoints, unique
from services.order.entrypoints.http import create_http_app as order_app
from services.order.settings import OrderSettings
from services.promotion.entrypoints.http import create_http_app as promotion_app
from services.promotion.settings import PromotionSettings
from services.referral.entrypoints.http import create_http_app as referral_app
from services.referral.settings import ReferralSettings
from tests.security.world import ISSUER, PROBLEM_JSON

MAX_EXAMPLES = 8
MERCHANT = "m-fuzz"

APPS: dict[str, Callable[[dict[str, Any]], FastAPI]] = {
    "inventory": lambda s: inventory_app(InventorySettings(**s)),
    "order": lambda s: order_app(OrderSettings(**s)),
    "promotion": lambda s: promotion_app(PromotionSettings(**s)),
    "referral": lambda s: referral_app(ReferralSettings(**s)),
}


@schemathesis.check
def problem_json_for_every_4xx(ctx: Any, response: Any, case: Any) -> bool | None:
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])
        found = content_type[0] if isinstance(content_type, list) else content_type
        assert found == PROBLEM_JSON, f"{response.status_code} answered as {found!r}"
        body = response.json()
        assert body["status"] == response.status_code
        assert body["title"]
        assert "detail" in body
    return None


def run_database(coro: Any) -> Any:
    return asyncio.run(coro)


async def _create(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Served:
    """An app served by uvicorn on a loopback port, in a thread with its own event loop."""

    def __init__(self, app: FastAPI) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> Served:
        self._thread.start()
        for _ in range(600):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                raise RuntimeError("the app did not start")
            self._thread.join(0.05)
        raise RuntimeError("the app did not start in time")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


@pytest.fixture(scope="module", params=sorted(APPS))
def served(request: pytest.FixtureRequest, stack: StackEndpoints) -> Iterator[str]:
    service: str = request.param
    name = unique(f"{service}_fuzz")
    run_database(_create(stack.postgres_dsn, name))
    dsn = stack.postgres_dsn.rsplit("/", 1)[0] + f"/{name}"
    values = {
        "environment": Environment.TEST,
        "postgres_dsn": dsn,
        "redis_url": stack.redis_url,
        "kafka_bootstrap": stack.kafka_bootstrap,
    }
    try:
        with Served(APPS[service](values)) as app:
            yield app.url
    finally:
        run_database(_drop(stack.postgres_dsn, name))


TOKEN = ISSUER.mint(
    "u-fuzz", [Role.VIEWER, Role.HOST, Role.OPERATOR, Role.MERCHANT_ADMIN], MERCHANT
)


def fuzz(operation: Any, modes: list[GenerationMode]) -> tuple[int, list[str]]:
    """Call ``operation`` with generated inputs: how many calls, and what went wrong."""
    failures: list[str] = []
    calls = 0

    @given(case=st.one_of(*(operation.as_strategy(generation_mode=m) for m in modes)))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def call(case: Any) -> None:
        nonlocal calls
        calls += 1
        try:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=[not_a_server_error, problem_json_for_every_4xx],
                timeout=30,
            )
        except Exception as error:  # every failure is collected, not only the first
            failures.append(f"{operation.label}: {str(error)[:600]}")

    call()
    return calls, failures


def test_no_input_gets_a_5xx_and_every_4xx_is_problem_json(served: str) -> None:
    api = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    failures: list[str] = []
    calls = 0
    for operation in operations:
        made, failed = fuzz(operation, [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
        calls += made
        failures += failed

    assert len(operations) >= 9
    assert calls >= 3 * len(operations)
    assert not failures, "\n".join(sorted(set(failures)))
