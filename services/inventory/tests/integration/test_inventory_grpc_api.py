"""Inventory's gRPC API on a real in-process server over Postgres and Redis: the reserve
path (Reserve, Confirm, Release), the reads (GetStock, GetSale, StreamStock), the sale's
life (ScheduleSale, EndSale), who may call what, and that no refused call moves a sale's
counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from livecommerce.inventory.v1 import inventory_pb2 as pb
from livecommerce.inventory.v1 import inventory_pb2_grpc
from services.inventory.application.handlers import receive_stock
from services.inventory.bootstrap import Inventory
from services.inventory.domain.sale import DEFAULT_HOLD_TTL_SECONDS, AllocateToSale
from services.inventory.domain.stock import ReceiveStock
from services.inventory.entrypoints.grpc import InventoryServicer
from services.inventory.tests.conftest import Clock, InventoryFactory
from services.kit.batching import ReplyPacer
from services.kit.grpc import authenticated_channel, start_grpc_server
from services.kit.identity import Role, TokenIssuer, TokenVerifier
from services.kit.testing import unique
from services.kit.wire import timestamp

if TYPE_CHECKING:
    from livecommerce.inventory.v1.inventory_pb2_grpc import InventoryServiceAsyncStub as Stub

RESERVED = pb.ReserveReply.RESERVED
SOLD_OUT = pb.ReserveReply.SOLD_OUT
HOLD_TTL = 600
SKU = "TEE-RED-M"
STREAM_WAIT = 1.0
"""A change must reach a StreamStock client within this many seconds."""
SOLD_OUT_PACE = 0.3
"""The test server's sold-out answers leave together at most this often (seconds)."""


@dataclass(frozen=True)
class Sale:
    merchant_id: str
    sale_id: str
    sku_id: str


Counts = tuple[int, int, int, int, int]
"""(allocated, available, held, sold, returned) of a sale."""


@dataclass
class Api:
    target: str
    parts: Inventory
    clock: Clock
    issuer: TokenIssuer
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def stub(self, token: str | None) -> Stub:
        if token is None:
            channel = grpc.aio.insecure_channel(self.target)
        else:
            channel = authenticated_channel(self.target, lambda: token)
        self.channels.append(channel)
        return inventory_pb2_grpc.InventoryServiceStub(channel)

    @property
    def service(self) -> Stub:
        """The order service: the caller the reserve path is for."""
        return self.stub(self.issuer.service_token("order"))

    def user(self, merchant_id: str, *roles: Role) -> Stub:
        return self.stub(self.issuer.mint(unique("user"), roles, merchant_id))

    async def open_sale(
        self,
        *,
        quantity: int = 10,
        limit: int = 3,
        starts_in: float = -60,
        lasts: float = 3600,
        on_hand: int | None = None,
    ) -> Sale:
        """A sale of a new merchant's SKU, open now unless ``starts_in`` is positive."""
        merchant, sale_id = unique("merchant"), unique("sale")
        await receive_stock(
            ReceiveStock(merchant, SKU, on_hand if on_hand is not None else quantity + 5),
            self.parts.stock,
        )
        starts_at = self.clock() + timedelta(seconds=starts_in)
        await self.parts.flash_sales.schedule(
            AllocateToSale(
                merchant_id=merchant,
                sale_id=sale_id,
                sku_id=SKU,
                quantity=quantity,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(seconds=lasts),
                per_user_limit=limit,
                hold_ttl_seconds=HOLD_TTL,
            )
        )
        return Sale(merchant, sale_id, SKU)

    async def reserve(
        self,
        sale: Sale,
        user_id: str,
        quantity: int,
        hold_id: str | None = None,
        *,
        retry: bool = False,
    ) -> pb.ReserveReply:
        return await self.service.Reserve(
            pb.ReserveRequest(
                merchant_id=sale.merchant_id,
                sale_id=sale.sale_id,
                user_id=user_id,
                quantity=quantity,
                hold_id=hold_id or unique("hold"),
                retry=retry,
            )
        )

    async def confirm(self, sale: Sale, hold_id: str) -> pb.HoldReply:
        return await self.service.Confirm(
            pb.HoldRequest(merchant_id=sale.merchant_id, hold_id=hold_id)
        )

    async def release(self, sale: Sale, hold_id: str, reason: str = "cancelled") -> pb.HoldReply:
        return await self.service.Release(
            pb.ReleaseRequest(merchant_id=sale.merchant_id, hold_id=hold_id, reason=reason)
        )

    async def counts(self, sale: Sale) -> Counts:
        status = await self.service.GetSale(
            pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id=sale.sale_id)
        )
        return counts_of(status)


def counts_of(status: pb.SaleStatus) -> Counts:
    return (status.allocated, status.available, status.held, status.sold, status.returned)


def conserved(counts: Counts) -> bool:
    allocated, available, held, sold, returned = counts
    return allocated == available + held + sold + returned


async def refusal(call: Awaitable[object]) -> grpc.StatusCode:
    """The status code a call was refused with (it must be refused)."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    code: grpc.StatusCode = refused.value.code()
    return code


async def next_status(call: grpc.aio.UnaryStreamCall[pb.GetSaleRequest, pb.SaleStatus]) -> object:
    return await asyncio.wait_for(call.read(), STREAM_WAIT)


@pytest_asyncio.fixture
async def api(make_inventory: InventoryFactory) -> AsyncIterator[Api]:
    clock = Clock()
    async with make_inventory(clock=clock) as parts:
        servicer = InventoryServicer(
            parts.stock,
            parts.flash_sales,
            stream_interval=0.05,
            sold_out_pacer=ReplyPacer(SOLD_OUT_PACE),
        )
        server, port = await start_grpc_server(
            service="inventory-grpc-test",
            address="127.0.0.1:0",
            verifier=TokenVerifier(parts.settings),
            register=lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
                servicer, s
            ),
            service_names=[pb.DESCRIPTOR.services_by_name["InventoryService"].full_name],
        )
        found = Api(f"127.0.0.1:{port}", parts, clock, TokenIssuer(parts.settings))
        try:
            yield found
        finally:
            for channel in found.channels:
                await channel.close()
            await server.stop(None)


# -- Reserve ------------------------------------------------------------------------------


async def test_a_reservation_holds_units_until_the_hold_ttl_and_reports_what_remains(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)

    reply = await api.reserve(sale, "buyer-1", 2, hold_id="order-1")

    assert reply.outcome == RESERVED
    assert reply.hold_id == "order-1"
    assert reply.remaining == 8
    expected_expiry = api.clock() + timedelta(seconds=HOLD_TTL)
    assert abs(reply.expires_at.ToDatetime(tzinfo=UTC) - expected_expiry) < timedelta(seconds=5)
    assert await api.counts(sale) == (10, 8, 2, 0, 0)


async def test_the_same_reservation_again_returns_the_same_hold_and_takes_nothing_more(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    first = await api.reserve(sale, "buyer-1", 2, hold_id="order-1")

    again = await api.reserve(sale, "buyer-1", 2, hold_id="order-1")

    assert again.outcome == RESERVED
    assert again.hold_id == "order-1"
    assert again.expires_at == first.expires_at
    assert await api.counts(sale) == (10, 8, 2, 0, 0)


async def test_a_hold_id_reused_with_another_quantity_or_user_is_already_exists(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    before = await api.counts(sale)

    other_quantity = await refusal(api.reserve(sale, "buyer-1", 1, hold_id="order-1"))
    other_user = await refusal(api.reserve(sale, "buyer-2", 2, hold_id="order-1"))

    assert other_quantity == grpc.StatusCode.ALREADY_EXISTS
    assert other_user == grpc.StatusCode.ALREADY_EXISTS
    assert await api.counts(sale) == before == (10, 8, 2, 0, 0)


async def test_a_hold_id_taken_in_another_sale_of_the_merchant_is_already_exists(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    other_id = unique("sale")
    await api.parts.flash_sales.schedule(
        AllocateToSale(
            merchant_id=sale.merchant_id,
            sale_id=other_id,
            sku_id=SKU,
            quantity=5,
            starts_at=api.clock() - timedelta(minutes=1),
            ends_at=api.clock() + timedelta(hours=1),
            per_user_limit=3,
        )
    )
    other = Sale(sale.merchant_id, other_id, SKU)

    refused = await refusal(api.reserve(other, "buyer-1", 2, hold_id="order-1"))
    reconciled = await api.parts.flash_sales.reconcile(
        [(await api.parts.ledger.sale(sale.merchant_id, other_id))[0]]
    )

    assert refused == grpc.StatusCode.ALREADY_EXISTS
    assert await api.counts(other) == (5, 5, 0, 0, 0)  # the units Redis granted came back
    assert reconciled == []
    assert await api.counts(sale) == (10, 8, 2, 0, 0)


async def test_a_sold_out_sale_answers_sold_out_as_a_normal_reply_and_takes_nothing(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=2, limit=2)
    last = await api.reserve(sale, "buyer-1", 2)

    sold_out = await api.reserve(sale, "buyer-2", 1, hold_id="order-late")

    assert (last.outcome, last.remaining) == (RESERVED, 0)
    assert sold_out.outcome == SOLD_OUT
    assert sold_out.hold_id == "order-late"
    assert sold_out.remaining == 0
    assert not sold_out.HasField("expires_at")
    assert await api.counts(sale) == (2, 0, 2, 0, 0)


async def test_sold_out_answers_to_a_busy_server_leave_together_each_with_its_own_hold_id(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=1)
    await api.reserve(sale, "buyer-1", 1)
    first = await api.reserve(sale, "buyer-2", 1)  # an idle server answers at once
    loop = asyncio.get_running_loop()
    burst_sent = loop.time()

    burst = await asyncio.gather(
        *(api.reserve(sale, f"buyer-{n}", 1, hold_id=f"order-{n}") for n in range(3, 8))
    )

    waited = loop.time() - burst_sent
    assert first.outcome == SOLD_OUT
    assert [(r.outcome, r.hold_id) for r in burst] == [
        (SOLD_OUT, f"order-{n}") for n in range(3, 8)
    ]
    assert waited >= SOLD_OUT_PACE / 3  # held for the next group, not answered one by one
    assert await api.counts(sale) == (1, 0, 1, 0, 0)


async def test_a_quantity_of_zero_or_above_the_per_user_limit_is_invalid_argument(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10, limit=3)
    before = await api.counts(sale)

    zero = await refusal(api.reserve(sale, "buyer-1", 0))
    negative = await refusal(api.reserve(sale, "buyer-1", -1))
    above_limit = await refusal(api.reserve(sale, "buyer-1", 4))

    assert [zero, negative, above_limit] == [grpc.StatusCode.INVALID_ARGUMENT] * 3
    assert await api.counts(sale) == before == (10, 10, 0, 0, 0)


async def test_a_buyer_who_reached_the_per_user_limit_is_refused_as_failed_precondition(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10, limit=3)
    await api.reserve(sale, "buyer-1", 2)
    await api.reserve(sale, "buyer-1", 1)
    before = await api.counts(sale)

    over = await refusal(api.reserve(sale, "buyer-1", 1))
    someone_else = await api.reserve(sale, "buyer-2", 3)

    assert over == grpc.StatusCode.FAILED_PRECONDITION
    assert before == (10, 7, 3, 0, 0)
    assert someone_else.outcome == RESERVED
    assert await api.counts(sale) == (10, 4, 6, 0, 0)


async def test_a_reservation_in_an_unknown_sale_is_not_found(api: Api) -> None:
    sale = await api.open_sale()
    unknown = Sale(sale.merchant_id, "no-such-sale", SKU)
    elsewhere = Sale(unique("merchant"), sale.sale_id, SKU)

    assert await refusal(api.reserve(unknown, "buyer-1", 1)) == grpc.StatusCode.NOT_FOUND
    assert await refusal(api.reserve(elsewhere, "buyer-1", 1)) == grpc.StatusCode.NOT_FOUND
    assert await api.counts(sale) == (10, 10, 0, 0, 0)


async def test_a_sale_not_open_yet_refuses_reservations_as_failed_precondition(
    api: Api,
) -> None:
    sale = await api.open_sale(starts_in=3600)

    early = await refusal(api.reserve(sale, "buyer-1", 1))
    status = await api.service.GetSale(
        pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id=sale.sale_id)
    )

    assert early == grpc.StatusCode.FAILED_PRECONDITION
    assert status.state == "scheduled"
    assert await api.counts(sale) == (10, 10, 0, 0, 0)


async def test_an_ended_sale_refuses_reservations_as_failed_precondition(api: Api) -> None:
    ended = await api.open_sale(quantity=10)
    await api.reserve(ended, "buyer-1", 1)
    await api.parts.flash_sales.end(ended.merchant_id, ended.sale_id)
    lapsed = await api.open_sale(quantity=10, lasts=120)
    ended_before = await api.counts(ended)

    after_end = await refusal(api.reserve(ended, "buyer-2", 1))
    api.clock.advance(120)
    after_window = await refusal(api.reserve(lapsed, "buyer-2", 1))

    assert after_end == grpc.StatusCode.FAILED_PRECONDITION
    assert after_window == grpc.StatusCode.FAILED_PRECONDITION
    assert ended_before == (10, 0, 1, 0, 9)
    assert await api.counts(ended) == ended_before
    assert await api.counts(lapsed) == (10, 10, 0, 0, 0)


async def test_malformed_ids_in_a_reservation_are_invalid_argument(api: Api) -> None:
    sale = await api.open_sale()

    valid = pb.ReserveRequest(
        merchant_id=sale.merchant_id,
        sale_id=sale.sale_id,
        user_id="buyer-1",
        quantity=1,
        hold_id="order-1",
    )

    def with_bad(field: str, value: str) -> pb.ReserveRequest:
        request = pb.ReserveRequest()
        request.CopyFrom(valid)
        setattr(request, field, value)
        return request

    codes = [
        await refusal(api.service.Reserve(with_bad(field, value)))
        for field, value in (
            ("merchant_id", "bad:merchant"),
            ("sale_id", "two words"),
            ("user_id", ""),
            ("hold_id", ""),
            ("hold_id", "x" * 65),
        )
    ]

    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 5
    assert await api.counts(sale) == (10, 10, 0, 0, 0)


async def test_a_reservation_retried_after_the_sale_sold_out_returns_its_hold(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=2, limit=2)
    first = await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    await api.reserve(sale, "buyer-2", 1)  # sold out: this process now remembers it

    retried = await api.reserve(sale, "buyer-1", 2, hold_id="order-1", retry=True)

    assert first.outcome == RESERVED
    assert (retried.outcome, retried.hold_id) == (RESERVED, "order-1")
    assert retried.expires_at == first.expires_at


async def test_a_quantity_above_the_limit_is_invalid_even_once_the_sale_sold_out(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=2, limit=2)
    await api.reserve(sale, "buyer-1", 2)
    await api.reserve(sale, "buyer-2", 1)  # sold out: this process now remembers it

    assert await refusal(api.reserve(sale, "buyer-3", 3)) == grpc.StatusCode.INVALID_ARGUMENT


# -- Confirm and Release ------------------------------------------------------------------


async def test_confirming_a_hold_sells_its_units_and_confirming_again_changes_nothing(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")

    first = await api.confirm(sale, "order-1")
    second = await api.confirm(sale, "order-1")

    assert (first.hold_id, first.state) == ("order-1", "confirmed")
    assert (second.hold_id, second.state) == ("order-1", "confirmed")
    assert await api.counts(sale) == (10, 8, 0, 2, 0)


async def test_a_released_hold_cannot_be_confirmed(api: Api) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    await api.release(sale, "order-1")

    refused = await refusal(api.confirm(sale, "order-1"))

    assert refused == grpc.StatusCode.FAILED_PRECONDITION
    assert await api.counts(sale) == (10, 10, 0, 0, 0)


async def test_releasing_a_hold_gives_its_units_back_and_releasing_again_changes_nothing(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 3, hold_id="order-1")

    first = await api.release(sale, "order-1", "expired")
    second = await api.release(sale, "order-1", "cancelled")
    again = await api.reserve(sale, "buyer-1", 3)  # the quota came back with the units

    assert (first.hold_id, first.state) == ("order-1", "released")
    assert (second.hold_id, second.state) == ("order-1", "released")
    assert again.outcome == RESERVED
    assert await api.counts(sale) == (10, 7, 3, 0, 0)


async def test_a_release_with_an_unknown_reason_is_invalid_argument(api: Api) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")

    bogus = await refusal(api.release(sale, "order-1", "bogus"))
    internal = await refusal(api.release(sale, "order-1", "unacknowledged"))

    assert [bogus, internal] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert await api.counts(sale) == (10, 8, 2, 0, 0)


async def test_confirming_or_releasing_an_unknown_hold_is_not_found(api: Api) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    stranger = Sale(unique("merchant"), sale.sale_id, SKU)

    codes = [
        await refusal(api.confirm(sale, "no-such-hold")),
        await refusal(api.release(sale, "no-such-hold")),
        await refusal(api.confirm(stranger, "order-1")),
        await refusal(api.release(stranger, "order-1")),
    ]

    assert codes == [grpc.StatusCode.NOT_FOUND] * 4
    assert await api.counts(sale) == (10, 8, 2, 0, 0)


# -- who may call what --------------------------------------------------------------------


async def test_merchant_users_may_not_reserve_confirm_or_release(api: Api) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    merchant = sale.merchant_id

    codes = []
    for stub in (
        api.user(merchant, Role.MERCHANT_ADMIN),
        api.user(merchant, Role.OPERATOR),
        api.user(merchant, Role.VIEWER),
    ):
        codes += [
            await refusal(
                stub.Reserve(
                    pb.ReserveRequest(
                        merchant_id=merchant,
                        sale_id=sale.sale_id,
                        user_id="buyer-2",
                        quantity=1,
                        hold_id="order-2",
                    )
                )
            ),
            await refusal(stub.Confirm(pb.HoldRequest(merchant_id=merchant, hold_id="order-1"))),
            await refusal(stub.Release(pb.ReleaseRequest(merchant_id=merchant, hold_id="order-1"))),
        ]

    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 9
    assert await api.counts(sale) == (10, 8, 2, 0, 0)


async def test_a_viewer_may_not_read_sales_or_stock(api: Api) -> None:
    sale = await api.open_sale()
    viewer = api.user(sale.merchant_id, Role.VIEWER)

    codes = [
        await refusal(viewer.GetSale(pb.GetSaleRequest(sale_id=sale.sale_id))),
        await refusal(viewer.GetStock(pb.GetStockRequest(sku_id=SKU))),
        await refusal(viewer.StreamStock(pb.GetSaleRequest(sale_id=sale.sale_id)).read()),
    ]

    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 3


async def test_a_call_without_a_token_is_unauthenticated(api: Api) -> None:
    sale = await api.open_sale()
    anonymous = api.stub(None)

    codes = [
        await refusal(
            anonymous.Reserve(
                pb.ReserveRequest(
                    merchant_id=sale.merchant_id,
                    sale_id=sale.sale_id,
                    user_id="buyer-1",
                    quantity=1,
                    hold_id="order-1",
                )
            )
        ),
        await refusal(anonymous.Confirm(pb.HoldRequest(merchant_id=sale.merchant_id))),
        await refusal(anonymous.Release(pb.ReleaseRequest(merchant_id=sale.merchant_id))),
        await refusal(anonymous.GetSale(pb.GetSaleRequest(sale_id=sale.sale_id))),
        await refusal(anonymous.GetStock(pb.GetStockRequest(sku_id=SKU))),
        await refusal(anonymous.StreamStock(pb.GetSaleRequest(sale_id=sale.sale_id)).read()),
    ]

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 6
    assert await api.counts(sale) == (10, 10, 0, 0, 0)


async def test_a_service_reserves_confirms_and_releases_in_any_merchants_sale(
    api: Api,
) -> None:
    one, other = await api.open_sale(quantity=5), await api.open_sale(quantity=6)

    held = [await api.reserve(sale, "buyer-1", 1, hold_id="order-1") for sale in (one, other)]
    confirmed = await api.confirm(one, "order-1")
    released = await api.release(other, "order-1")

    assert [r.outcome for r in held] == [RESERVED, RESERVED]
    assert (confirmed.state, released.state) == ("confirmed", "released")
    assert await api.counts(one) == (5, 4, 0, 1, 0)
    assert await api.counts(other) == (6, 6, 0, 0, 0)


async def test_a_merchant_admin_cannot_see_another_merchants_sale_stock_or_stream(
    api: Api,
) -> None:
    theirs = await api.open_sale()
    stranger = api.user(unique("merchant"), Role.MERCHANT_ADMIN)
    owner = theirs.merchant_id

    codes = [
        await refusal(
            stranger.GetSale(pb.GetSaleRequest(merchant_id=owner, sale_id=theirs.sale_id))
        ),
        await refusal(stranger.GetStock(pb.GetStockRequest(merchant_id=owner, sku_id=SKU))),
        await refusal(
            stranger.StreamStock(
                pb.GetSaleRequest(merchant_id=owner, sale_id=theirs.sale_id)
            ).read()
        ),
        await refusal(stranger.GetSale(pb.GetSaleRequest(sale_id=theirs.sale_id))),
        await refusal(stranger.GetStock(pb.GetStockRequest(sku_id=SKU))),
    ]

    assert codes == [grpc.StatusCode.NOT_FOUND] * 5


async def test_a_merchant_user_who_names_no_merchant_reads_their_own_sale_and_stock(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10, on_hand=25)
    await api.reserve(sale, "buyer-1", 2)

    for role in (Role.MERCHANT_ADMIN, Role.OPERATOR, Role.HOST):
        stub = api.user(sale.merchant_id, role)
        status = await stub.GetSale(pb.GetSaleRequest(sale_id=sale.sale_id))
        stock = await stub.GetStock(pb.GetStockRequest(sku_id=SKU))

        assert (status.sale_id, status.sku_id, status.state) == (sale.sale_id, SKU, "open")
        assert counts_of(status) == (10, 8, 2, 0, 0)
        assert stock == pb.StockLevel(
            sku_id=SKU, merchant_id=sale.merchant_id, on_hand=15, version=2
        )


# -- GetStock and GetSale -----------------------------------------------------------------


async def test_get_stock_reports_what_the_sku_has_on_hand_after_allocating_to_a_sale(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=6, on_hand=10)

    stock = await api.service.GetStock(pb.GetStockRequest(merchant_id=sale.merchant_id, sku_id=SKU))
    unknown = await refusal(
        api.service.GetStock(pb.GetStockRequest(merchant_id=sale.merchant_id, sku_id="NOPE"))
    )
    malformed = await refusal(
        api.service.GetStock(pb.GetStockRequest(merchant_id=sale.merchant_id, sku_id="a b"))
    )

    assert stock == pb.StockLevel(sku_id=SKU, merchant_id=sale.merchant_id, on_hand=4, version=2)
    assert unknown == grpc.StatusCode.NOT_FOUND
    assert malformed == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_sale_describes_the_sale_and_an_unknown_sale_is_not_found(api: Api) -> None:
    sale = await api.open_sale(quantity=10, limit=3)

    status = await api.service.GetSale(
        pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id=sale.sale_id)
    )
    unknown = await refusal(
        api.service.GetSale(pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id="nope"))
    )

    assert (status.sale_id, status.sku_id, status.state) == (sale.sale_id, SKU, "open")
    assert status.per_user_limit == 3
    assert status.ends_at.ToDatetime(tzinfo=UTC) - status.starts_at.ToDatetime(
        tzinfo=UTC
    ) == timedelta(seconds=3600)
    assert unknown == grpc.StatusCode.NOT_FOUND


async def test_sale_counts_add_up_to_the_allocation_through_reserves_confirms_and_releases(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10, limit=5)
    seen: list[Counts] = [await api.counts(sale)]

    await api.reserve(sale, "buyer-1", 3, hold_id="a")
    seen.append(await api.counts(sale))
    await api.reserve(sale, "buyer-2", 4, hold_id="b")
    seen.append(await api.counts(sale))
    await api.confirm(sale, "a")
    seen.append(await api.counts(sale))
    await api.release(sale, "b")
    seen.append(await api.counts(sale))
    await api.release(sale, "a", "refunded")
    seen.append(await api.counts(sale))
    await api.reserve(sale, "buyer-3", 5, hold_id="c")
    await api.confirm(sale, "c")
    await api.parts.flash_sales.end(sale.merchant_id, sale.sale_id)
    seen.append(await api.counts(sale))

    assert seen == [
        (10, 10, 0, 0, 0),
        (10, 7, 3, 0, 0),
        (10, 3, 7, 0, 0),
        (10, 3, 4, 3, 0),
        (10, 7, 0, 3, 0),
        (10, 10, 0, 0, 0),
        (10, 0, 0, 5, 5),
    ]
    assert all(conserved(counts) for counts in seen)


# -- StreamStock --------------------------------------------------------------------------


async def test_stream_stock_sends_the_current_counts_then_a_change_within_a_second(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    call = api.service.StreamStock(
        pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id=sale.sale_id)
    )
    try:
        initial = await next_status(call)
        await api.reserve(sale, "buyer-1", 2)
        changed = await next_status(call)
    finally:
        call.cancel()

    assert isinstance(initial, pb.SaleStatus)
    assert isinstance(changed, pb.SaleStatus)
    assert (initial.sale_id, initial.state) == (sale.sale_id, "open")
    assert counts_of(initial) == (10, 10, 0, 0, 0)
    assert counts_of(changed) == (10, 8, 2, 0, 0)


async def test_stream_stock_ends_once_the_sale_has_ended_and_its_holds_are_resolved(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    call = api.user(sale.merchant_id, Role.HOST).StreamStock(
        pb.GetSaleRequest(sale_id=sale.sale_id)
    )
    try:
        initial = await next_status(call)
        await api.parts.flash_sales.end(sale.merchant_id, sale.sale_id)
        ended = await next_status(call)
        await api.release(sale, "order-1")
        resolved = await next_status(call)
        after = await next_status(call)
    finally:
        call.cancel()

    assert isinstance(initial, pb.SaleStatus)
    assert isinstance(ended, pb.SaleStatus)
    assert isinstance(resolved, pb.SaleStatus)
    assert (initial.state, counts_of(initial)) == ("open", (10, 8, 2, 0, 0))
    assert (ended.state, counts_of(ended)) == ("ended", (10, 0, 2, 0, 8))
    assert (resolved.state, counts_of(resolved)) == ("ended", (10, 0, 0, 0, 10))
    assert after is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_stream_stock_of_an_unknown_sale_is_not_found(api: Api) -> None:
    sale = await api.open_sale()
    call = api.service.StreamStock(
        pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id="no-such-sale")
    )

    assert await refusal(call.read()) == grpc.StatusCode.NOT_FOUND


# -- ScheduleSale and EndSale -------------------------------------------------------------


async def merchant_with_stock(api: Api, on_hand: int = 10) -> str:
    merchant = unique("merchant")
    await receive_stock(ReceiveStock(merchant, SKU, on_hand), api.parts.stock)
    return merchant


def new_sale(api: Api, merchant_id: str, /, **changes: Any) -> pb.ScheduleSaleRequest:
    """A sale of 6 units of SKU, open for an hour from a minute ago; ``changes`` override
    (None leaves a field unset)."""
    now = api.clock()
    fields: dict[str, Any] = {
        "merchant_id": merchant_id,
        "sale_id": "drop-1",
        "sku_id": SKU,
        "quantity": 6,
        "starts_at": timestamp(now - timedelta(minutes=1)),
        "ends_at": timestamp(now + timedelta(hours=1)),
        "per_user_limit": 3,
        "hold_ttl_seconds": HOLD_TTL,
    } | changes
    return pb.ScheduleSaleRequest(**{k: v for k, v in fields.items() if v is not None})


async def on_hand(api: Api, merchant_id: str) -> int:
    stock = await api.service.GetStock(pb.GetStockRequest(merchant_id=merchant_id, sku_id=SKU))
    return stock.on_hand


async def sales_of(api: Api, merchant_id: str) -> int:
    count: int = await api.parts.pool.fetchval(
        "SELECT count(*) FROM flash_sales WHERE merchant_id = $1", merchant_id
    )
    return count


async def test_a_service_schedules_a_sale_that_sets_units_aside_and_takes_reservations(
    api: Api,
) -> None:
    merchant = await merchant_with_stock(api, 10)
    request = new_sale(api, merchant, buckets=2)

    status = await api.service.ScheduleSale(request)
    sale = Sale(merchant, "drop-1", SKU)
    held = await api.reserve(sale, "buyer-1", 2)

    assert (status.sale_id, status.sku_id, status.state) == ("drop-1", SKU, "open")
    assert counts_of(status) == (6, 6, 0, 0, 0)
    assert (status.starts_at, status.ends_at) == (request.starts_at, request.ends_at)
    assert status.per_user_limit == 3
    assert await on_hand(api, merchant) == 4
    assert held.outcome == RESERVED
    assert await api.counts(sale) == (6, 4, 2, 0, 0)
    assert (await api.parts.ledger.sale(merchant, "drop-1"))[0].buckets == 2


async def test_scheduling_the_same_sale_again_returns_it_and_sets_nothing_more_aside(
    api: Api,
) -> None:
    merchant = await merchant_with_stock(api, 10)
    request = new_sale(api, merchant)
    first = await api.service.ScheduleSale(request)
    await api.reserve(Sale(merchant, "drop-1", SKU), "buyer-1", 2)

    again = await api.service.ScheduleSale(request)
    by_admin = await api.user(merchant, Role.MERCHANT_ADMIN).ScheduleSale(
        new_sale(api, "", starts_at=request.starts_at, ends_at=request.ends_at)
    )

    assert counts_of(first) == (6, 6, 0, 0, 0)
    assert counts_of(again) == counts_of(by_admin) == (6, 4, 2, 0, 0)
    assert await on_hand(api, merchant) == 4
    assert await sales_of(api, merchant) == 1


async def test_another_definition_under_a_taken_sale_id_is_already_exists(api: Api) -> None:
    merchant = await merchant_with_stock(api, 20)
    request = new_sale(api, merchant)
    await api.service.ScheduleSale(request)
    later = timestamp(request.ends_at.ToDatetime(tzinfo=UTC) + timedelta(seconds=1))

    codes = [
        await refusal(api.service.ScheduleSale(new_sale(api, merchant, **changes)))
        for changes in (
            {"quantity": 7, "starts_at": request.starts_at, "ends_at": request.ends_at},
            {"starts_at": request.starts_at, "ends_at": later},
            {"per_user_limit": 2, "starts_at": request.starts_at, "ends_at": request.ends_at},
            {"hold_ttl_seconds": 0, "starts_at": request.starts_at, "ends_at": request.ends_at},
            {"buckets": 2, "starts_at": request.starts_at, "ends_at": request.ends_at},
        )
    ]

    assert codes == [grpc.StatusCode.ALREADY_EXISTS] * 5
    assert await on_hand(api, merchant) == 14


async def test_concurrent_identical_schedules_set_the_units_aside_once(api: Api) -> None:
    merchant = await merchant_with_stock(api, 10)
    request = new_sale(api, merchant)

    statuses = await asyncio.gather(*(api.service.ScheduleSale(request) for _ in range(8)))

    assert {counts_of(s) for s in statuses} == {(6, 6, 0, 0, 0)}
    assert await on_hand(api, merchant) == 4
    assert await sales_of(api, merchant) == 1


async def test_a_bad_sale_definition_is_invalid_argument_and_sets_nothing_aside(
    api: Api,
) -> None:
    merchant = await merchant_with_stock(api, 10)
    now = api.clock()
    past = timestamp(now - timedelta(hours=2))

    codes = [
        await refusal(api.service.ScheduleSale(new_sale(api, merchant, **changes)))
        for changes in (
            {"starts_at": None},
            {"ends_at": None},
            {"starts_at": Timestamp(seconds=2**40)},
            {"ends_at": Timestamp(seconds=1, nanos=-1)},
            {"ends_at": past},
            {"starts_at": past, "ends_at": timestamp(now - timedelta(hours=1))},
            {"quantity": 0},
            {"quantity": -3},
            {"quantity": 10**12},
            {"per_user_limit": 0},
            {"per_user_limit": 1001},
            {"hold_ttl_seconds": 1},
            {"hold_ttl_seconds": -5},
            {"buckets": -1},
            {"buckets": 65},
            {"quantity": 2, "buckets": 3},
            {"sale_id": ""},
            {"sale_id": "two words"},
            {"sku_id": "a b"},
            {"merchant_id": ""},
            {"merchant_id": "bad:merchant"},
        )
    ]

    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 21
    assert await on_hand(api, merchant) == 10
    assert await sales_of(api, merchant) == 0


async def test_a_sale_of_an_unknown_sku_or_of_more_than_is_on_hand_is_refused(api: Api) -> None:
    merchant = await merchant_with_stock(api, 5)

    unknown = await refusal(api.service.ScheduleSale(new_sale(api, merchant, sku_id="NOPE")))
    too_many = await refusal(api.service.ScheduleSale(new_sale(api, merchant, quantity=6)))
    nothing = await refusal(api.service.ScheduleSale(new_sale(api, unique("merchant"), quantity=1)))

    assert unknown == nothing == grpc.StatusCode.NOT_FOUND
    assert too_many == grpc.StatusCode.FAILED_PRECONDITION
    assert await on_hand(api, merchant) == 5
    assert await sales_of(api, merchant) == 0


async def test_a_sale_scheduled_without_ttl_or_buckets_gets_the_defaults(api: Api) -> None:
    merchant = await merchant_with_stock(api, 10)

    await api.service.ScheduleSale(new_sale(api, merchant, hold_ttl_seconds=0, buckets=0))
    sale, _ = await api.parts.ledger.sale(merchant, "drop-1")

    assert (sale.hold_ttl_seconds, sale.buckets) == (DEFAULT_HOLD_TTL_SECONDS, 1)


async def test_only_services_ops_and_the_merchants_admin_may_schedule_or_end_sales(
    api: Api,
) -> None:
    merchant = await merchant_with_stock(api, 20)
    ops = api.stub(api.issuer.mint("ops-1", [Role.OPS]))
    admin = api.user(merchant, Role.MERCHANT_ADMIN)
    stranger = api.user(unique("merchant"), Role.MERCHANT_ADMIN)

    by_ops = await ops.ScheduleSale(new_sale(api, merchant, sale_id="by-ops", quantity=1))
    by_admin = await admin.ScheduleSale(new_sale(api, "", sale_id="by-admin", quantity=1))
    refused = [
        await refusal(api.user(merchant, role).ScheduleSale(new_sale(api, merchant)))
        for role in (Role.OPERATOR, Role.HOST, Role.VIEWER)
    ] + [
        await refusal(api.user(merchant, role).EndSale(pb.GetSaleRequest(sale_id="by-ops")))
        for role in (Role.OPERATOR, Role.HOST, Role.VIEWER)
    ]
    hidden = [
        await refusal(stranger.ScheduleSale(new_sale(api, merchant))),
        await refusal(stranger.EndSale(pb.GetSaleRequest(merchant_id=merchant, sale_id="by-ops"))),
    ]
    anonymous = [
        await refusal(api.stub(None).ScheduleSale(new_sale(api, merchant))),
        await refusal(api.stub(None).EndSale(pb.GetSaleRequest(sale_id="by-ops"))),
    ]
    ended = await admin.EndSale(pb.GetSaleRequest(sale_id="by-ops"))

    assert (by_ops.sale_id, by_admin.sale_id) == ("by-ops", "by-admin")
    assert refused == [grpc.StatusCode.PERMISSION_DENIED] * 6
    assert hidden == [grpc.StatusCode.NOT_FOUND] * 2
    assert anonymous == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert ended.state == "ended"
    assert await on_hand(api, merchant) == 19
    assert await sales_of(api, merchant) == 2


async def test_ending_a_sale_returns_its_unsold_units_and_ending_again_changes_nothing(
    api: Api,
) -> None:
    sale = await api.open_sale(quantity=10, on_hand=15)
    await api.reserve(sale, "buyer-1", 2, hold_id="order-1")
    request = pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id=sale.sale_id)

    ended = await api.service.EndSale(request)
    again = await api.service.EndSale(request)
    late = await refusal(api.reserve(sale, "buyer-2", 1))
    await api.release(sale, "order-1")

    assert (ended.state, counts_of(ended)) == ("ended", (10, 0, 2, 0, 8))
    assert again == ended
    assert late == grpc.StatusCode.FAILED_PRECONDITION
    assert await api.counts(sale) == (10, 0, 0, 0, 10)
    assert await on_hand(api, sale.merchant_id) == 15


async def test_ending_an_unknown_or_malformed_sale_is_refused(api: Api) -> None:
    sale = await api.open_sale()

    codes = [
        await refusal(
            api.service.EndSale(pb.GetSaleRequest(merchant_id=sale.merchant_id, sale_id=sale_id))
        )
        for sale_id in ("no-such-sale", "", "two words")
    ] + [await refusal(api.service.EndSale(pb.GetSaleRequest(sale_id=sale.sale_id)))]

    assert codes == [
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
    assert await api.counts(sale) == (10, 10, 0, 0, 0)
