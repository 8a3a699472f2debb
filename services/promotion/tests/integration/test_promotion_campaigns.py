"""Flash-sale campaigns on the real Postgres: the stock is handed to inventory, overlapping
campaigns of one SKU are refused, a scheduled campaign starts and ends on time by its
durable timers, and a refusal by inventory records nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.kit.errors import PreconditionFailedError
from services.kit.testing import unique
from services.promotion.domain.campaigns import (
    CampaignExistsError,
    CampaignOverlapError,
    CampaignState,
    ScheduleCampaign,
)
from services.promotion.entrypoints.worker import timer_workers
from services.promotion.tests.conftest import FakeInventory, PromotionFactory
from services.promotion.tests.helpers import cny, now


def _command(merchant: str, campaign_id: str, starts_in: float, lasts: float) -> ScheduleCampaign:
    starts = now() + timedelta(seconds=starts_in)
    return ScheduleCampaign(
        merchant_id=merchant,
        campaign_id=campaign_id,
        sku_id="LIP-01",
        room_id="room-1",
        quantity=50,
        starts_at=starts,
        ends_at=starts + timedelta(seconds=lasts),
        per_user_limit=1,
        flash_price=cny(990),
    )


async def test_a_scheduled_campaign_starts_and_ends_on_time_by_its_timers(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    inventory = FakeInventory()
    async with make_promotion(inventory=inventory) as parts:
        command = _command(merchant, unique("camp"), starts_in=0.5, lasts=1.0)
        campaign = await parts.campaigns.schedule(command)
        assert (merchant, campaign.campaign_id) in inventory.sales
        assert await parts.campaigns.schedule(command) == campaign
        timers = timer_workers(parts)
        await asyncio.sleep(0.6)
        await timers["campaign-starts"].fire_due()
        await asyncio.sleep(1.0)
        await timers["campaign-ends"].fire_due()
        final = await parts.campaign_book.campaign(merchant, campaign.campaign_id)
        assert final.state(now()) is CampaignState.ENDED
        assert (merchant, campaign.campaign_id) in inventory.ended
        types = await parts.pool.fetch(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY version",
            f"campaign:{merchant}:{campaign.campaign_id}",
        )
        assert [t["event_type"].rsplit(".", 1)[1] for t in types] == [
            "CampaignScheduled",
            "CampaignStarted",
            "CampaignEnded",
        ]


async def test_overlapping_campaigns_of_a_sku_are_refused_and_allocate_nothing(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    inventory = FakeInventory()
    async with make_promotion(inventory=inventory) as parts:
        await parts.campaigns.schedule(_command(merchant, "first", starts_in=60, lasts=600))
        with pytest.raises(CampaignOverlapError):
            await parts.campaigns.schedule(_command(merchant, "second", starts_in=300, lasts=600))
        racing = await asyncio.gather(
            *(
                parts.campaigns.schedule(_command(merchant, f"race-{i}", 3600, 600))
                for i in range(4)
            ),
            return_exceptions=True,
        )
        assert sum(1 for r in racing if not isinstance(r, BaseException)) == 1
        assert all(
            isinstance(r, CampaignOverlapError) for r in racing if isinstance(r, BaseException)
        )
        with pytest.raises(CampaignExistsError):
            await parts.campaigns.schedule(_command(merchant, "first", starts_in=7200, lasts=60))
        assert await parts.campaign_book.find(merchant, "second") is None


async def test_a_campaign_inventory_cannot_stock_is_not_recorded(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    inventory = FakeInventory()
    inventory.on_hand = 10
    async with make_promotion(inventory=inventory) as parts:
        with pytest.raises(PreconditionFailedError, match="not enough stock"):
            await parts.campaigns.schedule(_command(merchant, "big", starts_in=60, lasts=600))
        assert await parts.campaign_book.find(merchant, "big") is None
