"""The checkout saga's decisions, with in-memory stand-ins for its ports: what is undone
when a later step fails, and what one idempotency key gives back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from services.kit.errors import KitError, OutcomeUnknownError, UnavailableError
from services.kit.eventstore import StoredEvent
from services.kit.sold_out import SoldOutMemory
from services.order.application.orders import OrderPolicy, Orders
from services.order.application.payments import (
    CreatedPayment,
    PaymentNotification,
    PaymentQuery,
    PaymentRequest,
    RefundReceipt,
)
from services.order.application.ports import (
    Claim,
    IdempotencyKey,
    PricedLine,
    PricedOrder,
    PriceOrderQuery,
    Reservation,
    SoldOutError,
    TimerChange,
)
from services.order.domain.checkout import IdempotencyKeyReusedError, PlaceOrder
from services.order.domain.order import (
    CancelReason,
    Channel,
    Order,
    OrderEvent,
    OrderStatus,
    PaymentStarted,
    Totals,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class Prices:
    released: list[str] = field(default_factory=list)
    down: bool = False
    quoted: int = 0

    async def price_order(self, query: PriceOrderQuery) -> PricedOrder:
        self.quoted += 1
        if self.down:
            raise UnavailableError("promotion is unavailable")
        lines = tuple(
            PricedLine(sku, qty, f"sale-{sku}", 100, 100, 0, 0, 100 * qty, "", "")
            for sku, qty in query.lines
        )
        total = sum(x.total for x in lines)
        return PricedOrder("CNY", lines, Totals(total, 0, 0, 0, 0, total), query.coupon_ids, ())

    async def release_coupons(self, merchant_id: str, order_id: str) -> None:
        self.released.append(order_id)


@dataclass
class Holds:
    sold_out: set[str] = field(default_factory=set)
    held: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    stuck: set[str] = field(default_factory=set)
    """Sales whose reserve never answers (until the caller gives up)."""
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    asked: int = 0

    async def reserve(
        self,
        merchant_id: str,
        sale_id: str,
        buyer_id: str,
        quantity: int,
        hold_id: str,
        *,
        again: bool = False,
    ) -> Reservation:
        self.asked += 1
        if sale_id in self.stuck:
            self.waiting.set()
            await asyncio.Event().wait()
        found = again and hold_id in self.held  # inventory looks a resumed hold up
        if sale_id in self.sold_out and not found:  # else it answers from its memory
            return Reservation(False, None)
        if not found:
            self.held.append(hold_id)
        return Reservation(True, NOW + timedelta(minutes=15))

    async def confirm(self, merchant_id: str, hold_id: str) -> bool:
        return True

    async def release(self, merchant_id: str, hold_id: str, reason: str) -> None:
        self.released.append(hold_id)


@dataclass
class Store:
    orders: dict[str, Order] = field(default_factory=dict)
    timers: list[TimerChange] = field(default_factory=list)
    keys: list[IdempotencyKey] = field(default_factory=list)

    async def load(self, merchant_id: str, order_id: str) -> Order:
        return self.orders.get(order_id, Order(merchant_id, order_id))

    async def save(
        self,
        order: Order,
        events: Sequence[OrderEvent],
        timers: Sequence[TimerChange] = (),
        idempotency: IdempotencyKey | None = None,
    ) -> Order:
        for event in events:
            order = order.apply(event)
        self.orders[order.order_id] = order
        self.timers.extend(timers)
        if idempotency:
            self.keys.append(idempotency)
        return order

    async def merchant_of(self, order_id: str) -> str | None:
        return self.orders[order_id].merchant_id if order_id in self.orders else None

    async def history(self, merchant_id: str, order_id: str) -> list[StoredEvent]:
        return []


@dataclass
class Keys:
    store: Store
    claims: dict[IdempotencyKey, Claim] = field(default_factory=dict)
    lease_ran_out: set[IdempotencyKey] = field(default_factory=set)

    async def claim(self, key: IdempotencyKey, fingerprint: str, order_id: str) -> Claim:
        if key in self.claims:
            found = self.claims[key]
            if key in self.lease_ran_out and found.state == "running":
                self.lease_ran_out.discard(key)
                return Claim(found.order_id, found.fingerprint, True, "running", resumed=True)
            placed = found.order_id in self.store.orders
            return Claim(
                found.order_id,
                found.fingerprint,
                False,
                "placed" if placed else found.state,
                found.failure,
            )
        self.claims[key] = Claim(order_id, fingerprint, True, "running")
        return self.claims[key]

    async def fail(self, key: IdempotencyKey, status: int, error: str, detail: str) -> None:
        found = self.claims[key]
        self.claims[key] = Claim(
            found.order_id, found.fingerprint, False, "failed", (status, error, detail)
        )

    async def forget(self, key: IdempotencyKey) -> None:
        self.claims.pop(key, None)

    async def get(self, key: IdempotencyKey) -> Claim | None:
        return self.claims.get(key)


class NoPayments:
    name = "none"

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        raise AssertionError("not used")

    def verify_notification(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> PaymentNotification:
        raise AssertionError("not used")

    async def query(self, payment_id: str) -> PaymentQuery:
        raise AssertionError("not used")

    async def refund(
        self, payment_id: str, refund_id: str, amount_minor: int, reason: str
    ) -> RefundReceipt:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        return None


@dataclass
class Refunds(NoPayments):
    """A provider that only gives money back, and remembers what it gave."""

    given: list[tuple[str, str, int]] = field(default_factory=list)

    async def refund(
        self, payment_id: str, refund_id: str, amount_minor: int, reason: str
    ) -> RefundReceipt:
        self.given.append((payment_id, refund_id, amount_minor))
        return RefundReceipt(refund_id, f"provider-{refund_id}", amount_minor, True)


@dataclass
class CommittedLater(Store):
    """A store whose commit is not the caller's, like the group commit: once handed over,
    the order is recorded when ``commit`` is set, even if the caller was cancelled."""

    handed_over: asyncio.Event = field(default_factory=asyncio.Event)
    commit: asyncio.Event = field(default_factory=asyncio.Event)

    async def save(
        self,
        order: Order,
        events: Sequence[OrderEvent],
        timers: Sequence[TimerChange] = (),
        idempotency: IdempotencyKey | None = None,
    ) -> Order:
        async def recorded() -> Order:
            await self.commit.wait()
            return await Store.save(self, order, events, timers, idempotency)

        flush = asyncio.create_task(recorded())
        self.handed_over.set()
        return await asyncio.shield(flush)


@dataclass
class FailingSave(Store):
    """A store whose save fails with ``error``, after recording the order when ``recorded``
    (a COMMIT that lost the database after the server applied it)."""

    error: Exception = field(default_factory=lambda: UnavailableError("database down"))
    recorded: bool = False

    async def save(
        self,
        order: Order,
        events: Sequence[OrderEvent],
        timers: Sequence[TimerChange] = (),
        idempotency: IdempotencyKey | None = None,
    ) -> Order:
        if self.recorded:
            await Store.save(self, order, events, timers, idempotency)
        raise self.error


def _world(
    payments: NoPayments | None = None,
    store: Store | None = None,
    sold_out: SoldOutMemory | None = None,
) -> tuple[Orders, Store, Keys, Prices, Holds]:
    store = store or Store()
    keys = Keys(store)
    prices, holds = Prices(), Holds()
    ids = iter(f"order{n}" for n in range(100))
    orders = Orders(
        store,
        keys,
        prices,
        holds,
        payments or NoPayments(),
        OrderPolicy(),
        clock=lambda: NOW,
        new_id=lambda: next(ids),
        sold_out=sold_out,
    )
    return orders, store, keys, prices, holds


def _command(*lines: tuple[str, int]) -> PlaceOrder:
    return PlaceOrder("m1", "buyer-1", "room-1", Channel.APP, lines or (("sku-a", 1),), ("c1",))


async def test_a_placed_order_holds_every_line_and_waits_for_payment_before_the_hold_expires() -> (
    None
):
    orders, store, _, _, holds = _world()
    order = await orders.place(_command(("sku-a", 1), ("sku-b", 2)), "key-00000001")
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert holds.held == ["order0", "order0-2"]
    assert order.details.payment_deadline == NOW + timedelta(minutes=15) - timedelta(seconds=30)
    assert [t.kind for t in store.timers] == ["order.payment-deadline"]


async def test_a_sold_out_line_releases_the_holds_taken_and_the_coupons_and_is_remembered() -> None:
    orders, store, _, prices, holds = _world()
    holds.sold_out.add("sale-sku-b")
    with pytest.raises(SoldOutError):
        await orders.place(_command(("sku-a", 1), ("sku-b", 1)), "key-00000001")
    assert holds.released == ["order0"]
    assert prices.released == ["order0"]
    assert store.orders == {}
    with pytest.raises(KitError, match="sold out"):
        await orders.place(_command(("sku-a", 1), ("sku-b", 1)), "key-00000001")
    assert holds.held == ["order0"]


async def test_the_next_buyer_of_a_sku_just_found_sold_out_is_refused_at_once() -> None:
    """Without pricing the order, asking inventory or keeping the key."""
    orders, _, keys, prices, holds = _world()
    holds.sold_out.add("sale-sku-b")
    with pytest.raises(SoldOutError):
        await orders.place(_command(("sku-b", 1)), "key-00000001")
    quoted, asked = prices.quoted, holds.asked
    other = PlaceOrder("m1", "buyer-2", "room-1", Channel.APP, (("sku-a", 1), ("sku-b", 1)))
    with pytest.raises(SoldOutError, match="sku-b"):
        await orders.place(other, "key-00000002")
    assert (prices.quoted, holds.asked) == (quoted, asked)
    assert IdempotencyKey("m1", "buyer-2", "key-00000002") not in keys.claims  # nothing kept
    elsewhere = PlaceOrder("m1", "buyer-2", "room-2", Channel.APP, (("sku-a", 1),))
    assert (await orders.place(elsewhere, "key-00000003")).status is OrderStatus.PENDING_PAYMENT


async def test_a_retry_of_a_placed_order_gets_its_order_while_its_sku_is_remembered_sold_out() -> (
    None
):
    orders, _, _, _, _ = _world()
    first = await orders.place(_command(("sku-a", 1)), "key-00000001")
    orders.sold_out.remember("m1", "room-1", "sku-a")  # the last unit went meanwhile
    again = await orders.place(_command(("sku-a", 1)), "key-00000001")
    assert again.order_id == first.order_id


async def _found_sold_out_at_zero() -> tuple[Orders, Holds, list[float]]:
    """A world whose memory runs on ``now[0]`` (seconds), where buyer-1 just found sku-a
    sold out in room-1 (a memory of one second)."""
    now = [0.0]
    orders, _, _, _, holds = _world(sold_out=SoldOutMemory(1.0, clock=lambda: now[0]))
    holds.sold_out.add("sale-sku-a")
    with pytest.raises(SoldOutError):
        await orders.place(_command(("sku-a", 1)), "key-00000001")
    return orders, holds, now


async def test_a_sku_remembered_sold_out_is_offered_again_once_the_memory_lapses() -> None:
    orders, holds, now = await _found_sold_out_at_zero()
    holds.sold_out.clear()  # a unit came back
    now[0] = 0.9
    with pytest.raises(SoldOutError):
        await orders.place(_command(("sku-a", 1)), "key-00000002")
    now[0] = 1.0
    order = await orders.place(_command(("sku-a", 1)), "key-00000003")  # asks inventory
    assert order.status is OrderStatus.PENDING_PAYMENT
    other = PlaceOrder("m1", "buyer-2", "room-1", Channel.APP, (("sku-a", 1),))
    assert (await orders.place(other, "key-00000004")).status is OrderStatus.PENDING_PAYMENT


async def test_after_a_lapse_one_checkout_asks_inventory_while_the_others_hear_sold_out() -> None:
    orders, holds, now = await _found_sold_out_at_zero()
    holds.stuck.add("sale-sku-a")  # the next one asks inventory, which is slow to answer
    now[0] = 1.0
    asking = asyncio.create_task(orders.place(_command(("sku-a", 1)), "key-00000002"))
    await holds.waiting.wait()
    asked = holds.asked
    other = PlaceOrder("m1", "buyer-2", "room-1", Channel.APP, (("sku-a", 1),))
    with pytest.raises(SoldOutError):  # at once: not stuck behind inventory as well
        await asyncio.wait_for(orders.place(other, "key-00000003"), timeout=2)
    assert holds.asked == asked
    asking.cancel()


async def test_a_sold_out_order_without_a_coupon_has_no_coupon_lock_to_release() -> None:
    orders, _, _, prices, holds = _world()
    holds.sold_out.add("sale-sku-b")
    command = PlaceOrder("m1", "buyer-1", "room-1", Channel.APP, (("sku-a", 1), ("sku-b", 1)), ())
    with pytest.raises(SoldOutError):
        await orders.place(command, "key-00000001")
    assert holds.released == ["order0"]
    assert prices.released == []


async def test_a_dependency_down_forgets_the_key_so_a_retry_runs_the_checkout_again() -> None:
    orders, _, _, prices, _ = _world()
    prices.down = True
    with pytest.raises(UnavailableError):
        await orders.place(_command(), "key-00000001")
    prices.down = False
    order = await orders.place(_command(), "key-00000001")
    assert order.order_id == "order1"


async def test_a_retry_with_the_same_key_gets_the_same_order_and_holds_nothing_more() -> None:
    orders, _, _, _, holds = _world()
    first = await orders.place(_command(), "key-00000001")
    again = await orders.place(_command(), "key-00000001")
    assert again.order_id == first.order_id
    assert holds.held == [first.order_id]


async def test_the_same_key_with_another_body_is_refused() -> None:
    orders, _, _, _, _ = _world()
    await orders.place(_command(("sku-a", 1)), "key-00000001")
    with pytest.raises(IdempotencyKeyReusedError):
        await orders.place(_command(("sku-a", 2)), "key-00000001")


async def test_a_failed_group_seen_again_finishes_the_refund_a_crash_left_after_cancelling() -> (
    None
):
    refunds = Refunds()
    orders, store, _, _, _ = _world(refunds)
    order = await orders.place(_command(), "key-00000001")
    started = PaymentStarted(order.order_id, "pay-1", "sandbox", 100, "CNY", "https://pay")
    order = await store.save(order, order.start_payment(started, NOW))
    order = await store.save(order, order.record_payment("pay-1", "sandbox", "t1", 100, "CNY", NOW))
    await store.save(order, order.cancel(CancelReason.GROUP_FAILED))

    assert await orders.on_group_failed("m1", order.order_id) == "refunded"
    assert refunds.given == [("pay-1", "pay-1r", 100)]
    assert store.orders[order.order_id].payment_owed_back is None
    assert await orders.on_group_failed("m1", order.order_id) == "skipped"
    assert len(refunds.given) == 1


async def test_a_checkout_cancelled_while_its_order_is_recorded_keeps_its_holds_and_its_key() -> (
    None
):
    store = CommittedLater()
    orders, _, _, prices, holds = _world(store=store)
    checkout = asyncio.create_task(orders.place(_command(), "key-00000001"))
    await store.handed_over.wait()
    checkout.cancel()
    with pytest.raises(asyncio.CancelledError):
        await checkout
    store.commit.set()
    await asyncio.sleep(0)

    assert store.orders["order0"].status is OrderStatus.PENDING_PAYMENT
    assert holds.released == []
    assert prices.released == []
    retried = await orders.place(_command(), "key-00000001")
    assert retried.order_id == "order0"
    assert holds.held == ["order0"]


async def test_a_checkout_cancelled_before_its_order_is_saved_undoes_it_and_frees_the_key() -> None:
    orders, store, keys, prices, holds = _world()
    holds.stuck.add("sale-sku-b")
    checkout = asyncio.create_task(orders.place(_command(("sku-a", 1), ("sku-b", 1)), "key-1"))
    await holds.waiting.wait()
    checkout.cancel()
    with pytest.raises(asyncio.CancelledError):
        await checkout

    assert holds.released == ["order0"]
    assert prices.released == ["order0"]
    assert store.orders == {}
    assert keys.claims == {}


async def test_a_checkout_whose_save_lost_the_database_at_commit_keeps_its_holds_and_its_key() -> (
    None
):
    lost = OutcomeUnknownError("the database went away while this was being saved")
    orders, _, keys, prices, holds = _world(store=FailingSave(error=lost, recorded=True))
    with pytest.raises(OutcomeUnknownError):
        await orders.place(_command(), "key-00000001")

    assert holds.released == []
    assert prices.released == []
    assert len(keys.claims) == 1
    retried = await orders.place(_command(), "key-00000001")
    assert retried.order_id == "order0"
    assert retried.status is OrderStatus.PENDING_PAYMENT


async def test_a_checkout_whose_save_certainly_failed_undoes_it_and_frees_the_key() -> None:
    orders, store, keys, prices, holds = _world(store=FailingSave())
    with pytest.raises(UnavailableError) as raised:
        await orders.place(_command(), "key-00000001")

    assert not isinstance(raised.value, OutcomeUnknownError)
    assert holds.released == ["order0"]
    assert prices.released == ["order0"]
    assert keys.claims == {}
    assert store.orders == {}


async def test_a_checkout_resumed_after_its_lease_ran_out_finds_the_hold_it_had_taken() -> None:
    orders, _, keys, _, holds = _world()
    command = _command()
    key = IdempotencyKey("m1", "buyer-1", "key-00000001")
    keys.claims[key] = Claim("order-crashed", command.fingerprint(), False, "running")
    keys.lease_ran_out.add(key)
    holds.held.append("order-crashed")  # taken by the checkout that crashed
    holds.sold_out.add("sale-sku-a")  # and the sale sold out since

    placed = await orders.place(command, "key-00000001")

    assert placed.order_id == "order-crashed"
    assert placed.status is OrderStatus.PENDING_PAYMENT
    assert holds.released == []
