"""``python -m bench.naive_checkout PORT``: the naive single-database checkout, for comparison.

What many shops run: one FastAPI process and one Postgres database; a checkout is one
transaction that takes the stock with a conditional update and records the order::

    BEGIN;
    UPDATE naive_stock SET qty = qty - $q
     WHERE merchant_id = $m AND sku_id = $s AND qty >= $q
     RETURNING unit_price;                 -- no row: sold out, ROLLBACK, 409
    INSERT INTO naive_orders (...);        -- same (merchant, buyer, Idempotency-Key): the
    COMMIT;                                -- first order is answered again, stock untouched

It is given the same frame as the order API, so that what differs is the checkout itself:
the kit's application (:func:`services.kit.http.create_app`: request id, problem+json,
metrics, the bearer token verified and the viewer role required), the same request body
(:class:`services.order.entrypoints.http.NewOrder`), an ``Idempotency-Key`` header, a pool
of ``postgres_pool_max`` (20, as the order service's) connections, and the same server
(:func:`services.kit.runtime.run` and :func:`services.kit.runtime.serve_http`). It checks
no per-buyer limit and has no price rules, no coupons, no holds that expire and no events:
less work per order than the real checkout does.

The bench creates the database and these tables (:data:`SCHEMA`) and points the process
at them with ``BENCH_NAIVE_POSTGRES_DSN``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import uuid4

import asyncpg
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.db import create_pool
from services.kit.errors import PreconditionFailedError
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.identity import Role
from services.kit.runtime import run, serve_http
from services.kit.settings import ServiceSettings
from services.order.domain.checkout import validate_idempotency_key
from services.order.entrypoints.http import NewOrder

SCHEMA = """
CREATE TABLE naive_stock (
    merchant_id text NOT NULL,
    sku_id text NOT NULL,
    qty bigint NOT NULL,
    unit_price bigint NOT NULL,
    currency text NOT NULL,
    PRIMARY KEY (merchant_id, sku_id)
);
CREATE TABLE naive_orders (
    order_id text PRIMARY KEY,
    merchant_id text NOT NULL,
    buyer_id text NOT NULL,
    idempotency_key text NOT NULL,
    room_id text NOT NULL,
    channel text NOT NULL,
    lines jsonb NOT NULL,
    total bigint NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, buyer_id, idempotency_key)
);
"""
"""The naive checkout's tables (no CHECK on ``qty``: an oversell must show, not fail)."""

TAKE_STOCK = (
    "UPDATE naive_stock SET qty = qty - $3 WHERE merchant_id = $1 AND sku_id = $2 AND qty >= $3"
    " RETURNING unit_price, currency"
)
RECORD_ORDER = (
    "INSERT INTO naive_orders (order_id, merchant_id, buyer_id, idempotency_key, room_id,"
    " channel, lines, total, currency, status)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, 'pending_payment')"
)
FIND_ORDER = (
    "SELECT order_id, merchant_id, buyer_id, lines::text AS lines, total, currency, status"
    " FROM naive_orders WHERE merchant_id = $1 AND buyer_id = $2 AND idempotency_key = $3"
)


class NaiveSettings(ServiceSettings):
    """Environment prefix ``BENCH_NAIVE_``."""

    model_config = SettingsConfigDict(env_prefix="BENCH_NAIVE_", extra="ignore")

    service_name: str = "bench-naive-checkout"
    postgres_pool_max: int = Field(default=20, ge=1)


class SoldOutError(PreconditionFailedError):
    """No units left for a line: the transaction was rolled back."""


def _answer(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "order_id": row["order_id"],
        "merchant_id": row["merchant_id"],
        "buyer_id": row["buyer_id"],
        "status": row["status"],
        "lines": json.loads(row["lines"]),
        "total_minor": row["total"],
        "currency": row["currency"],
    }


async def place_order(
    pool: asyncpg.Pool, body: NewOrder, buyer_id: str, key: str
) -> dict[str, Any]:
    """The whole checkout: one transaction; the row lock on the SKU's stock is held from
    the UPDATE until the COMMIT, so checkouts of one hot SKU run one after another."""
    order_id = uuid4().hex
    try:
        async with pool.acquire() as conn, conn.transaction():
            lines: list[dict[str, Any]] = []
            currency = "CNY"
            for line in body.lines:
                taken = await conn.fetchrow(
                    TAKE_STOCK, body.merchant_id, line.sku_id, line.quantity
                )
                if taken is None:
                    raise SoldOutError(f"SKU {line.sku_id} is sold out")
                currency = taken["currency"]
                lines.append(
                    {
                        "sku_id": line.sku_id,
                        "quantity": line.quantity,
                        "unit_price_minor": taken["unit_price"],
                        "total_minor": taken["unit_price"] * line.quantity,
                    }
                )
            total = sum(line["total_minor"] for line in lines)
            await conn.execute(
                RECORD_ORDER,
                order_id,
                body.merchant_id,
                buyer_id,
                key,
                body.room_id,
                body.channel.value,
                json.dumps(lines),
                total,
                currency,
            )
    except asyncpg.UniqueViolationError:
        # the same key again: the rollback gave the units back; answer the first order
        async with pool.acquire() as conn:
            found = await conn.fetchrow(FIND_ORDER, body.merchant_id, buyer_id, key)
        if found is None:
            raise
        return _answer(found)
    return {
        "order_id": order_id,
        "merchant_id": body.merchant_id,
        "buyer_id": buyer_id,
        "status": "pending_payment",
        "lines": lines,
        "total_minor": total,
        "currency": currency,
    }


router = APIRouter(prefix="/v1")


@router.post("/orders", status_code=201, summary="Place an order (naive)")
async def place(
    body: NewOrder,
    caller: CurrentCaller,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    caller.require_role(Role.VIEWER)
    key = validate_idempotency_key(idempotency_key)
    pool: asyncpg.Pool = request.app.state.pool
    return JSONResponse(await place_order(pool, body, caller.subject, key), status_code=201)


def create_naive_app(settings: NaiveSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.postgres_dsn,
            min_size=settings.postgres_pool_min,
            max_size=settings.postgres_pool_max,
        )
        app.state.pool = pool

        async def postgres() -> None:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

        add_readiness_check(app, "postgres", postgres)
        try:
            yield
        finally:
            await pool.close()

    return create_app(settings, title="bench: naive checkout", routers=[router], lifespan=lifespan)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print(
            "usage: BENCH_NAIVE_POSTGRES_DSN=... python -m bench.naive_checkout PORT",
            file=sys.stderr,
        )
        return 2
    settings = NaiveSettings(http_port=int(argv[0]))
    app = create_naive_app(settings)
    return run(settings, {"serve": lambda stop: serve_http(app, settings, stop)}, ["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
