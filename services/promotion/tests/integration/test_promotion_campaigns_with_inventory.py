"""Campaigns against the real inventory service: its gRPC server runs in-process on its own
database, promotion calls it as the service it is. Scheduling allocates the campaign's units
to the inventory sale of the same id, stopping ends it and returns the unsold units, and
inventory's refusals reach the merchant in their own words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import pytest_asyncio

from livecommerce.inventory.v1 import inventory_pb2 as inventory_pb
from livecommerce.inventory.v1 import inventory_pb2_grpc
from services.inventory.application.handlers import receive_stock
from services.inventory.bootstrap import Inventory, inventory
from services.inventory.domain.stock import ReceiveStock
from services.inventory.entrypoints.grpc import InventoryServicer
from services.inventory.settings import InventorySettings
from services.kit.errors import PreconditionFailedError
from services.kit.grpc import authenticated_channel, start_grpc_server
from services.kit.identity import TokenIssuer, TokenVerifier
from services.kit.settings import Environment
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints, unique
from services.promotion.adapters.inventory_client import GrpcInventorySales
from services.promotion.domain.campaigns import ScheduleCampaign
from services.promotion.tests.conftest import PromotionFactory
from services.promotion.tests.helpers import cny, now

SKU = "LIP-01"


@dataclass(frozen=True)
class RealInventory:
    parts: Inventory
    sales: GrpcInventorySales


@pytest_asyncio.fixture
async def real_inventory(stack: StackEndpoints) -> AsyncIterator[RealInventory]:
    async with scratch_database(stack, "inventory_for_promotion") as dsn:
        settings = InventorySettings(
            environment=Environment.TEST,
            postgres_dsn=dsn,
            redis_url=stack.redis_url,
            kafka_bootstrap=stack.kafka_bootstrap,
        )
        async with inventory(settings) as parts:
            servicer = InventoryServicer(parts.stock, parts.flash_sales)
            server, port = await start_grpc_server(
                service="inventory-test",
                address="127.0.0.1:0",
                verifier=TokenVerifier(settings),
                register=lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
                    servicer, s
                ),
                service_names=[
                    inventory_pb.DESCRIPTOR.services_by_name["InventoryService"].full_name
                ],
            )
            token = TokenIssuer(settings).service_token("promotion")
            channel = authenticated_channel(f"127.0.0.1:{port}", lambda: token)
            try:
                yield RealInventory(parts, GrpcInventorySales(channel))
            finally:
                await channel.close()
                await server.stop(grace=None)


def _campaign(merchant: str, quantity: int, starts_in: float = 3600) -> ScheduleCampaign:
    starts = now() + timedelta(seconds=starts_in)
    return ScheduleCampaign(
        merchant_id=merchant,
        campaign_id=unique("camp"),
        sku_id=SKU,
        room_id="room-1",
        quantity=quantity,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        per_user_limit=2,
        flash_price=cny(990),
    )


async def test_a_campaign_allocates_its_units_in_inventory_and_stopping_returns_them(
    make_promotion: PromotionFactory, real_inventory: RealInventory
) -> None:
    merchant = unique("m")
    await receive_stock(ReceiveStock(merchant, SKU, 100), real_inventory.parts.stock)
    async with make_promotion(inventory=real_inventory.sales) as parts:
        campaign = await parts.campaigns.schedule(_campaign(merchant, 40))
        sale = await real_inventory.parts.flash_sales.status(merchant, campaign.campaign_id)
        assert sale.allocated == 40
        assert (await real_inventory.parts.stock.load(merchant, SKU)).on_hand == 60

        await parts.campaigns.start(merchant, campaign.campaign_id)
        await parts.campaigns.stop(merchant, campaign.campaign_id)
        ended = await real_inventory.parts.flash_sales.status(merchant, campaign.campaign_id)
        assert ended.state == "ended"
        assert (await real_inventory.parts.stock.load(merchant, SKU)).on_hand == 100


async def test_a_campaign_larger_than_the_stock_is_refused_in_inventorys_words(
    make_promotion: PromotionFactory, real_inventory: RealInventory
) -> None:
    merchant = unique("m")
    await receive_stock(ReceiveStock(merchant, SKU, 10), real_inventory.parts.stock)
    async with make_promotion(inventory=real_inventory.sales) as parts:
        command = _campaign(merchant, 11)
        with pytest.raises(PreconditionFailedError, match="inventory"):
            await parts.campaigns.schedule(command)
        assert await parts.campaign_book.find(merchant, command.campaign_id) is None
