"""The order's durable timers in real Postgres, fired by several workers at once: the
unpaid timeout cancels once, a delivered order completes by itself once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest_asyncio

from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.testing import StackEndpoints, TestDatabase, open_test_database, unique
from services.order.adapters.store import PostgresIdempotencyKeys, PostgresOrderStore
from services.order.application.orders import (
    AUTO_COMPLETE_TIMER,
    PAYMENT_DEADLINE_TIMER,
    OrderPolicy,
    Orders,
)
from services.order.application.ports import TimerChange
from services.order.domain.order import (
    Order,
    OrderLine,
    OrderPaid,
    OrderPlaced,
    OrderStatus,
    ReturnKind,
    Totals,
)
from services.order.entrypoints.worker import timer_workers


class Unused:
    """The ports these timers never reach (no payment was started, nothing is priced)."""

    name = "unused"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} must not be called here")


@pytest_asyncio.fixture
async def db(stack: StackEndpoints) -> AsyncIterator[TestDatabase]:
    found, drop = await open_test_database(stack, ["services.order"])
    try:
        yield found
    finally:
        await drop()


def _orders(db: TestDatabase) -> tuple[Orders, PostgresOrderStore]:
    store = PostgresOrderStore(db.pool, PostgresEventStore(db.pool, "order"))
    orders = Orders(
        store,
        PostgresIdempotencyKeys(db.pool),
        Unused(),
        Unused(),
        Unused(),
        OrderPolicy(auto_complete_after=timedelta(milliseconds=200)),
    )
    return orders, store


async def _placed(store: PostgresOrderStore, *, paid: bool, deadline_in: timedelta) -> Order:
    merchant, order_id = unique("m"), unique("o")
    deadline = utcnow() + deadline_in
    line = OrderLine("sku", 1, "sale", order_id, 100, 100, 0, 0, 100)
    placed = OrderPlaced(
        order_id,
        "buyer",
        "room",
        "app",
        "CNY",
        (line,),
        (),
        "",
        "",
        Totals(100, 0, 0, 0, 0, 100),
        deadline,
    )
    order = Order(merchant, order_id)
    order = await store.save(
        order, order.place(placed), [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, deadline)]
    )
    if paid:
        paid_event = OrderPaid(order_id, "p1", "sandbox", "t1", 100, "CNY", utcnow())
        order = await store.save(
            order, [paid_event], [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, None)]
        )
    return order


async def _fire_with_racing_workers(db: TestDatabase, orders: Orders, kind: str) -> int:
    racers = [timer_workers(orders, db.pool, 0.05)[kind] for _ in range(3)]
    fired = await asyncio.gather(*(r.fire_due() for r in racers))
    return sum(fired)


async def test_the_unpaid_timeout_cancels_the_order_once_whatever_the_number_of_workers(
    db: TestDatabase,
) -> None:
    orders, store = _orders(db)
    order = await _placed(store, paid=False, deadline_in=timedelta(milliseconds=100))
    await asyncio.sleep(0.3)
    assert await _fire_with_racing_workers(db, orders, PAYMENT_DEADLINE_TIMER) == 1
    loaded = await store.load(order.merchant_id, order.order_id)
    assert loaded.status is OrderStatus.CANCELLED
    assert loaded.version == 2
    assert await _fire_with_racing_workers(db, orders, PAYMENT_DEADLINE_TIMER) == 0


async def test_a_delivered_order_completes_by_itself_when_its_time_comes(
    db: TestDatabase,
) -> None:
    orders, store = _orders(db)
    order = await _placed(store, paid=True, deadline_in=timedelta(minutes=10))
    await orders.ship(order.merchant_id, order.order_id, "SF", "SF1")
    delivered = await orders.deliver(order.merchant_id, order.order_id)
    assert delivered.status is OrderStatus.DELIVERED
    assert await _fire_with_racing_workers(db, orders, AUTO_COMPLETE_TIMER) == 0
    await asyncio.sleep(0.4)
    assert await _fire_with_racing_workers(db, orders, AUTO_COMPLETE_TIMER) == 1
    completed = await store.load(order.merchant_id, order.order_id)
    assert completed.status is OrderStatus.COMPLETED


async def test_an_open_return_defers_the_auto_completion_until_it_closes(
    db: TestDatabase,
) -> None:
    orders, store = _orders(db)
    order = await _placed(store, paid=True, deadline_in=timedelta(minutes=10))
    await orders.ship(order.merchant_id, order.order_id, "SF", "SF1")
    await orders.deliver(order.merchant_id, order.order_id)
    await orders.request_return(
        order.merchant_id, order.order_id, "buyer", "x1", ReturnKind.EXCHANGE, [("sku", 1)], ""
    )
    await asyncio.sleep(0.4)
    await _fire_with_racing_workers(db, orders, AUTO_COMPLETE_TIMER)
    assert (await store.load(order.merchant_id, order.order_id)).status is OrderStatus.DELIVERED
    closed = await orders.decide_return(order.merchant_id, order.order_id, "x1", False, "no")
    assert closed.status is OrderStatus.COMPLETED
