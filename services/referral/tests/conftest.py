"""Fixtures for referral tests against the real stack: a fresh database per module, the
service's parts on it, and a harness that feeds the consumers real envelopes built from the
room and order protobuf messages through the kernel's ConsumerRunner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest_asyncio
from google.protobuf.message import Message

from livecommerce.order.v1 import events_pb2 as order_events
from livecommerce.room.v1 import events_pb2 as room_events
from services.kit.consumer import ConsumedEvent, ConsumerRunner, Handler
from services.kit.identity import Role, TokenIssuer
from services.kit.kafka import new_consumer, new_producer
from services.kit.scaffolding import envelope_of, throwaway_database
from services.kit.settings import Environment
from services.kit.testing import StackEndpoints, unique
from services.kit.timers import TimerWorker
from services.kit.wire import timestamp
from services.referral.adapters.book import RELEASE_TIMER, release_timer_key
from services.referral.application.merchants import configure_programme
from services.referral.application.sharing import mint_share_code
from services.referral.bootstrap import Referral, referral
from services.referral.domain.codes import MintShareCode, ShareCode, ShareTargetKind
from services.referral.domain.ledger import Bucket
from services.referral.domain.programme import Programme
from services.referral.entrypoints.consumers import (
    ORDERS_CONSUMER,
    ROOMS_CONSUMER,
    order_event_handlers,
    room_event_handlers,
)
from services.referral.entrypoints.http import create_http_app
from services.referral.entrypoints.worker import release_timer_handler
from services.referral.settings import ReferralSettings


@pytest_asyncio.fixture(scope="module")
async def referral_settings(stack: StackEndpoints) -> AsyncIterator[ReferralSettings]:
    """Settings pointing at a database created for this module (dropped after it)."""
    async with throwaway_database(stack.postgres_dsn, "referral_test") as dsn:
        yield ReferralSettings(
            environment=Environment.TEST,
            postgres_dsn=dsn,
            postgres_pool_max=30,
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
        )


@dataclass
class Harness:
    """One merchant's world: the service's parts, its consumers fed by hand, HTTP, time."""

    parts: Referral
    rooms: ConsumerRunner
    orders: ConsumerRunner
    merchant: str = field(default_factory=lambda: unique("m"))
    versions: dict[str, int] = field(default_factory=dict)

    def envelope_of(self, message: Message, stream_id: str, aggregate: str) -> ConsumedEvent:
        self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        envelope = envelope_of(
            message,
            stream_id=stream_id,
            version=self.versions[stream_id],
            aggregate_type=aggregate,
            merchant_id=self.merchant,
            producer=aggregate,
        )
        return ConsumedEvent(envelope, f"{aggregate}.events", 0, 0)

    async def deliver(
        self, runner: ConsumerRunner, handlers: dict[str, Handler], event: ConsumedEvent
    ) -> str:
        return await runner.apply(handlers[event.event_type], event)

    async def room_event(self, message: Message, room_id: str) -> tuple[str, ConsumedEvent]:
        event = self.envelope_of(message, f"room:{self.merchant}:{room_id}", "room")
        return await self.redeliver(event), event

    async def order_event(self, message: Message, order_id: str) -> tuple[str, ConsumedEvent]:
        event = self.envelope_of(message, f"order:{self.merchant}:{order_id}", "order")
        return await self.redeliver(event), event

    async def redeliver(self, event: ConsumedEvent) -> str:
        if event.envelope.aggregate_type == "room":
            return await self.deliver(self.rooms, room_event_handlers(self.parts), event)
        return await self.deliver(self.orders, order_event_handlers(self.parts), event)

    async def mint(self, sharer: str, room_id: str = "room-1") -> ShareCode:
        async with self.parts.books.transaction() as book:
            return await mint_share_code(
                MintShareCode(self.merchant, sharer, ShareTargetKind.ROOM, room_id),
                book,
                self.parts.sharing,
                self.parts.clock(),
            )

    async def join(
        self, viewer: str, code: str = "", room_id: str = "room-1", device: str = ""
    ) -> tuple[str, ConsumedEvent]:
        message = room_events.ViewerJoined(
            room_id=room_id,
            viewer_id=viewer,
            channel="mini_program",
            share_code=code,
            entry="share_link" if code else "",
            joined_at=timestamp(datetime.now(UTC)),
            device_id=device,
        )
        return await self.room_event(message, room_id)

    async def place(
        self,
        order_id: str,
        buyer: str,
        lines: list[tuple[str, int, str]],
        code: str = "",
        room_id: str = "room-1",
    ) -> tuple[str, ConsumedEvent]:
        """``lines``: (sku, total paid for the line, promotion kind)."""
        message = order_events.OrderPlaced(
            order_id=order_id,
            buyer_id=buyer,
            room_id=room_id,
            channel="mini_program",
            currency="CNY",
            lines=[
                order_events.OrderLine(
                    sku_id=sku, quantity=1, total_minor=total, promotion_kind=kind
                )
                for sku, total, kind in lines
            ],
            share_code=code,
            total_minor=sum(total for _, total, _ in lines),
        )
        return await self.order_event(message, order_id)

    async def pay(
        self, order_id: str, buyer: str, amount: int, paid_at: datetime | None = None
    ) -> tuple[str, ConsumedEvent]:
        message = order_events.OrderPaid(
            order_id=order_id,
            buyer_id=buyer,
            payment_id=f"pay-{order_id}",
            provider="sandbox",
            amount_minor=amount,
            currency="CNY",
            paid_at=timestamp(paid_at or datetime.now(UTC)),
        )
        return await self.order_event(message, order_id)

    async def refund(
        self, order_id: str, buyer: str, amount: int, *, full: bool = False, refund_id: str = ""
    ) -> tuple[str, ConsumedEvent]:
        message = order_events.OrderRefunded(
            order_id=order_id,
            refund_id=refund_id or unique("refund"),
            buyer_id=buyer,
            amount_minor=amount,
            currency="CNY",
            full=full,
        )
        return await self.order_event(message, order_id)

    async def sold_through_share(
        self, order_id: str, sharer: str, buyer: str, lines: list[tuple[str, int, str]]
    ) -> ShareCode:
        """``buyer`` came through a fresh code of ``sharer``, placed and paid ``order_id``."""
        share = await self.mint(sharer)
        await self.join(buyer, share.code)
        await self.place(order_id, buyer, lines)
        await self.pay(order_id, buyer, sum(total for _, total, _ in lines))
        return share

    async def configure(self, **overrides: Any) -> Programme:
        base: dict[str, Any] = {"levels": 1, "default_rate_bps": 1000, "min_withdrawal_minor": 100}
        base.update(overrides)
        return await configure_programme(Programme(self.merchant, **base), self.parts.books)

    async def pass_return_window(self, order_id: str) -> int:
        """Make the order's release timer due now, and run the timer worker once."""
        await self.parts.pool.execute(
            "UPDATE timers SET due_at = now() - interval '1 second' WHERE kind = $1 AND key = $2",
            RELEASE_TIMER,
            release_timer_key(self.merchant, order_id),
        )
        worker: TimerWorker = release_timer_handler(self.parts)
        return await worker.fire_due()

    async def balances(self, user: str) -> dict[Bucket, int]:
        return await self.parts.queries.balances(self.merchant, user)

    async def ledger_total(self) -> int:
        value = await self.parts.pool.fetchval(
            "SELECT coalesce(sum(amount_minor), 0) FROM ledger_entries WHERE merchant_id = $1",
            self.merchant,
        )
        return int(value)

    def token(self, subject: str, *roles: Role) -> dict[str, str]:
        issued = TokenIssuer(self.parts.settings).mint(
            subject, roles or (Role.VIEWER,), self.merchant
        )
        return {"Authorization": f"Bearer {issued}"}


CONSUMERS = (ROOMS_CONSUMER, ORDERS_CONSUMER)


@pytest_asyncio.fixture
async def harness(referral_settings: ReferralSettings) -> AsyncIterator[Harness]:
    async with referral(referral_settings) as parts:
        producer = new_producer(referral_settings)
        consumers = [new_consumer(referral_settings, name, []) for name in CONSUMERS]
        runners = [
            ConsumerRunner(
                name=name,
                consumer=consumer,
                dead_letters=producer,
                pool=parts.pool,
                handlers={},
            )
            for name, consumer in zip(CONSUMERS, consumers, strict=True)
        ]
        try:
            yield Harness(parts, runners[0], runners[1])
        finally:
            for consumer in consumers:
                await consumer.stop()
            await producer.stop()


@pytest_asyncio.fixture
async def http(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API on the harness's parts (no lifespan: the parts are the harness's)."""
    app = create_http_app(harness.parts.settings)
    app.state.referral = harness.parts
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        yield client
