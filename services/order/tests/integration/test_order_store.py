"""Orders in real Postgres: events, read model, timers and idempotency keys move together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio

from services.kit.errors import ConcurrencyError
from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.testing import StackEndpoints, TestDatabase, open_test_database, unique
from services.order.adapters.store import (
    PostgresIdempotencyKeys,
    PostgresOrderStore,
    PostgresOrderViews,
)
from services.order.application.ports import IdempotencyKey, TimerChange
from services.order.domain.order import (
    CancelReason,
    Order,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    Totals,
)


@pytest_asyncio.fixture
async def db(stack: StackEndpoints) -> AsyncIterator[TestDatabase]:
    found, drop = await open_test_database(stack, ["services.order"])
    try:
        yield found
    finally:
        await drop()


def _placed(order_id: str, buyer: str = "buyer-1", room: str = "room-1") -> OrderPlaced:
    line = OrderLine("sku-1", 2, "sale-1", order_id, 500, 400, 200, 0, 800, "flash_sale", "s1")
    return OrderPlaced(
        order_id=order_id,
        buyer_id=buyer,
        room_id=room,
        channel="app",
        currency="CNY",
        lines=(line,),
        coupon_ids=(),
        group_id="",
        share_code="",
        totals=Totals(1000, 200, 0, 0, 0, 800),
        payment_deadline=utcnow() + timedelta(minutes=10),
    )


async def _timers(db: TestDatabase, key: str) -> list[str]:
    rows = await db.pool.fetch("SELECT kind FROM timers WHERE key = $1 AND fired_at IS NULL", key)
    return [r["kind"] for r in rows]


async def test_placing_an_order_writes_its_event_its_view_and_its_deadline_timer_together(
    db: TestDatabase,
) -> None:
    store = PostgresOrderStore(db.pool, PostgresEventStore(db.pool, "order"))
    merchant, order_id = unique("m"), unique("o")
    order = Order(merchant, order_id)
    deadline = utcnow() + timedelta(minutes=10)
    saved = await store.save(
        order, order.place(_placed(order_id)), [TimerChange("order.deadline", order_id, deadline)]
    )
    assert saved.version == 1
    loaded = await store.load(merchant, order_id)
    assert loaded.status is OrderStatus.PENDING_PAYMENT
    assert loaded.details.totals.total == 800
    assert await store.merchant_of(order_id) == merchant
    assert await _timers(db, order_id) == ["order.deadline"]

    cancelled = await store.save(
        loaded, loaded.cancel(CancelReason.BUYER), [TimerChange("order.deadline", order_id, None)]
    )
    assert cancelled.status is OrderStatus.CANCELLED
    assert await _timers(db, order_id) == []
    views = await PostgresOrderViews(db.pool).for_merchant(
        merchant, None, OrderStatus.CANCELLED, None, None, 10, 0
    )
    assert [v["order_id"] for v in views] == [order_id]


async def test_a_stale_save_is_refused_and_changes_neither_view_nor_timers(
    db: TestDatabase,
) -> None:
    store = PostgresOrderStore(db.pool, PostgresEventStore(db.pool, "order"))
    merchant, order_id = unique("m"), unique("o")
    order = Order(merchant, order_id)
    placed = await store.save(order, order.place(_placed(order_id)))
    await store.save(placed, placed.cancel(CancelReason.BUYER))
    with pytest.raises(ConcurrencyError):
        await store.save(
            placed,
            placed.cancel(CancelReason.TIMEOUT),
            [TimerChange("order.other", order_id, utcnow())],
        )
    assert await _timers(db, order_id) == []
    loaded = await store.load(merchant, order_id)
    assert loaded.cancel_reason is CancelReason.BUYER
    assert loaded.version == 2


async def test_buyers_list_only_their_orders_and_merchants_filter_by_room(
    db: TestDatabase,
) -> None:
    store = PostgresOrderStore(db.pool, PostgresEventStore(db.pool, "order"))
    views = PostgresOrderViews(db.pool)
    merchant = unique("m")
    for order_id, buyer, room in [("o1", "b1", "r1"), ("o2", "b2", "r1"), ("o3", "b1", "r2")]:
        order = Order(merchant, f"{merchant}-{order_id}")
        await store.save(order, order.place(_placed(order.order_id, buyer, room)))
    mine = await views.for_buyer("b1", None, 10, 0)
    assert sorted(v["order_id"] for v in mine) == [f"{merchant}-o1", f"{merchant}-o3"]
    in_room = await views.for_merchant(merchant, "r1", None, None, None, 10, 0)
    assert sorted(v["order_id"] for v in in_room) == [f"{merchant}-o1", f"{merchant}-o2"]
    assert await views.for_merchant(unique("m"), None, None, None, None, 10, 0) == []


async def test_one_idempotency_key_is_claimed_once_and_remembers_its_outcome(
    db: TestDatabase,
) -> None:
    keys = PostgresIdempotencyKeys(db.pool)
    key = IdempotencyKey(unique("m"), "buyer", unique("key"))
    first = await keys.claim(key, "fp", "order-1")
    again = await keys.claim(key, "fp", "order-2")
    assert (first.mine, first.order_id) == (True, "order-1")
    assert (again.mine, again.order_id, again.state) == (False, "order-1", "running")

    await keys.fail(key, 409, "SoldOutError", "sold out")
    failed = await keys.get(key)
    assert failed is not None
    assert failed.failure == (409, "SoldOutError", "sold out")


async def test_a_forgotten_or_abandoned_claim_is_taken_by_the_next_request(
    db: TestDatabase,
) -> None:
    keys = PostgresIdempotencyKeys(db.pool)
    key = IdempotencyKey(unique("m"), "buyer", unique("key"))
    await keys.claim(key, "fp", "order-1")
    await keys.forget(key)
    retaken = await keys.claim(key, "fp", "order-2")
    assert (retaken.mine, retaken.order_id, retaken.resumed) == (True, "order-2", False)

    await db.pool.execute(
        "UPDATE idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = $1",
        key.key,
    )
    taken_over = await keys.claim(key, "fp", "order-3")
    assert (taken_over.mine, taken_over.order_id, taken_over.resumed) == (True, "order-2", True)


async def _place_together(
    store: PostgresOrderStore, keys: PostgresIdempotencyKeys, merchant: str, order_ids: list[str]
) -> list[Order | BaseException]:
    """Claim each order's key, then place every order at once."""
    deadline = utcnow() + timedelta(minutes=10)
    idempotency = [IdempotencyKey(merchant, f"buyer-{o}", f"key-{o}") for o in order_ids]
    for key, order_id in zip(idempotency, order_ids, strict=True):
        await keys.claim(key, "fp", order_id)

    async def place(key: IdempotencyKey, order_id: str) -> Order:
        order = Order(merchant, order_id)
        return await store.save(
            order,
            order.place(_placed(order_id, key.buyer_id)),
            [TimerChange("order.deadline", order_id, deadline)],
            idempotency=key,
        )

    return await asyncio.gather(
        *(place(k, o) for k, o in zip(idempotency, order_ids, strict=True)),
        return_exceptions=True,
    )


async def _placed_whole(
    db: TestDatabase,
    store: PostgresOrderStore,
    keys: PostgresIdempotencyKeys,
    merchant: str,
    order_id: str,
) -> bool:
    claim = await keys.get(IdempotencyKey(merchant, f"buyer-{order_id}", f"key-{order_id}"))
    return (
        (await store.load(merchant, order_id)).status is OrderStatus.PENDING_PAYMENT
        and await _timers(db, order_id) == ["order.deadline"]
        and claim is not None
        and claim.state == "placed"
    )


async def test_orders_placed_together_share_transactions_and_each_is_whole(
    db: TestDatabase,
) -> None:
    store = PostgresOrderStore(db.pool, PostgresEventStore(db.pool, "order"))
    keys = PostgresIdempotencyKeys(db.pool)
    merchant = unique("m")
    order_ids = [f"{merchant}-{i}" for i in range(40)]

    results = await _place_together(store, keys, merchant, order_ids)

    assert all(isinstance(r, Order) and r.version == 1 for r in results)
    for order_id in order_ids:
        assert await _placed_whole(db, store, keys, merchant, order_id), order_id
    views = await PostgresOrderViews(db.pool).for_merchant(merchant, None, None, None, None, 50, 0)
    assert len(views) == 40
    transactions = await db.pool.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM events WHERE merchant_id = $1", merchant
    )
    assert transactions < 40  # placed together, committed together


async def test_a_placement_that_fails_in_a_batch_fails_alone(db: TestDatabase) -> None:
    store = PostgresOrderStore(db.pool, PostgresEventStore(db.pool, "order"))
    keys = PostgresIdempotencyKeys(db.pool)
    merchant = unique("m")
    taken = Order(merchant, f"{merchant}-taken")
    await store.save(taken, taken.place(_placed(taken.order_id)))
    order_ids = [taken.order_id] + [f"{merchant}-{i}" for i in range(8)]

    results = await _place_together(store, keys, merchant, order_ids)

    assert isinstance(results[0], ConcurrencyError)
    assert all(isinstance(r, Order) for r in results[1:])
    for order_id in order_ids[1:]:
        assert await _placed_whole(db, store, keys, merchant, order_id), order_id
    refused = await keys.get(
        IdempotencyKey(merchant, f"buyer-{taken.order_id}", f"key-{taken.order_id}")
    )
    assert refused is not None
    assert refused.state == "running"  # the checkout compensates and forgets or fails it
    assert await _timers(db, taken.order_id) == []


async def test_keys_claimed_together_each_go_to_exactly_one_checkout(db: TestDatabase) -> None:
    keys = PostgresIdempotencyKeys(db.pool)
    merchant = unique("m")
    # 20 different keys and 8 taps of one more key, all claimed in one burst.
    wanted = [IdempotencyKey(merchant, f"buyer-{i}", "key") for i in range(20)]
    wanted += [IdempotencyKey(merchant, "tapper", "key")] * 8
    claims = await asyncio.gather(
        *(keys.claim(key, "fp", f"order-{i}") for i, key in enumerate(wanted))
    )

    assert all(c.mine and c.order_id == f"order-{i}" for i, c in enumerate(claims[:20]))
    taps = claims[20:]
    assert sum(c.mine for c in taps) == 1
    winner = next(c.order_id for c in taps if c.mine)
    assert all(c.order_id == winner and c.state == "running" for c in taps)
    stored = await db.pool.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE merchant_id = $1", merchant
    )
    assert stored == 21
