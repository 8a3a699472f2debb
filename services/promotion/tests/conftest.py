"""Fixtures for promotion tests against the real stack: a database per module, the
service's parts built on it with a clock the test can move and a fake inventory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime

import pytest_asyncio

from services.kit.errors import PreconditionFailedError
from services.kit.settings import Environment
from services.kit.testclock import MovableClock, scratch_database
from services.kit.testing import StackEndpoints
from services.promotion.application.ports import InventorySales
from services.promotion.bootstrap import Promotion, promotion
from services.promotion.domain.campaigns import CampaignScheduled
from services.promotion.settings import PromotionSettings

Clock = MovableClock


class FakeInventory:
    """Inventory's flash sales as a dict: what promotion asked for, and refusals on demand."""

    def __init__(self) -> None:
        self.sales: dict[tuple[str, str], CampaignScheduled] = {}
        self.ended: set[tuple[str, str]] = set()
        self.on_hand: int | None = None

    async def schedule_sale(self, merchant_id: str, campaign: CampaignScheduled) -> None:
        key = (merchant_id, campaign.campaign_id)
        if key not in self.sales:
            if self.on_hand is not None and campaign.quantity > self.on_hand:
                raise PreconditionFailedError("inventory: not enough stock on hand")
            self.sales[key] = campaign

    async def end_sale(self, merchant_id: str, sale_id: str) -> None:
        self.ended.add((merchant_id, sale_id))


@pytest_asyncio.fixture(scope="module")
async def promotion_settings(stack: StackEndpoints) -> AsyncIterator[PromotionSettings]:
    """Settings pointing at a database created for this module (dropped after it)."""
    async with scratch_database(stack, "promotion_test") as dsn:
        yield PromotionSettings(
            environment=Environment.TEST,
            postgres_dsn=dsn,
            postgres_pool_max=30,
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
        )


PromotionFactory = Callable[..., AbstractAsyncContextManager[Promotion]]


@pytest_asyncio.fixture
async def make_promotion(promotion_settings: PromotionSettings) -> PromotionFactory:
    """``async with make_promotion(clock=Clock()) as parts:`` — one process's worth of the
    service (call it twice for two replicas sharing the database and Redis)."""

    @asynccontextmanager
    async def build(
        clock: Callable[[], datetime] | None = None,
        inventory: InventorySales | None = None,
        settings: PromotionSettings | None = None,
    ) -> AsyncIterator[Promotion]:
        async with promotion(
            settings or promotion_settings,
            clock=clock or Clock(),
            inventory=inventory or FakeInventory(),
        ) as parts:
            yield parts

    return build
