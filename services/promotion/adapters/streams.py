"""Promotion's streams in the event store, and appends to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg

from services.kit.context import MessageContext
from services.kit.db import Connection
from services.kit.eventstore import StreamAppend
from services.promotion.adapters import codec

PRICE = "price"
PRICE_PROMOTION = "price-promotion"
COUPON_TEMPLATE = "coupon-template"
COUPON = "coupon"
CAMPAIGN = "campaign"
GROUP_OFFER = "group-offer"
GROUP = "group"


def stream_id(kind: str, merchant_id: str, key: str) -> str:
    return f"{kind}:{merchant_id}:{key}"


def append(
    kind: str,
    merchant_id: str,
    key: str,
    version: int,
    events: Sequence[object],
    context: MessageContext | None = None,
) -> StreamAppend:
    """Events for the stream ``kind:merchant:key``, expected at ``version`` (0: new)."""
    return StreamAppend(
        stream_id=stream_id(kind, merchant_id, key),
        aggregate_type=kind,
        merchant_id=merchant_id,
        expected_version=version,
        events=[codec.encode(event) for event in events],
        context=context,
    )


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    async with pool.acquire() as conn, conn.transaction():
        yield conn


TransactionContext = AbstractAsyncContextManager[Connection]
